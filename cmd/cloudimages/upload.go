package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/diskimage"
	"github.com/quantix/cloudimages/tusclient"
)

// uploadRequest is what `images upload` sends: the file and the tus
// metadata of POST /v1/uploads.
type uploadRequest struct {
	file     string
	pool     string
	name     string
	checksum string
	format   string
}

func imagesUpload(cfg *clientConfig) *cobra.Command {
	var req uploadRequest
	var wait bool
	var o output
	cmd := &cobra.Command{
		Use:   "upload FILE --pool POOL",
		Short: "upload a local image file into a pool (resumable: run it again to continue)",
		Long: "Uploads a local image file into a pool over the API's resumable uploads (tus, /v1/uploads).\n" +
			"Interrupted, the same command run again continues where the server has bytes. The upload\n" +
			"becomes an image that is READY once its checksum (given, or computed and recorded) and its\n" +
			"format checks pass; with --wait the command follows it there.",
		Example:           "  cloudimages images upload ./debian-12.qcow2 --pool local-1 --checksum sha256:HEX --wait",
		Args:              exactArgs(1, "the file to upload"),
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			req.file = args[0]
			if req.pool == "" {
				return usagef("--pool is required: the pool to put the image in ('cloudimages pools ls' lists them)")
			}
			st, err := os.Stat(req.file)
			if err != nil {
				return usagef("%v", err)
			}
			if !st.Mode().IsRegular() {
				return usagef("%s is not a regular file: give an image file", req.file)
			}
			if req.name == "" {
				req.name = filepath.Base(req.file)
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			id, err := sendUpload(cmd.Context(), c, req, cmd.ErrOrStderr())
			if errors.Is(err, context.Canceled) {
				fmt.Fprintf(cmd.ErrOrStderr(), "Upload of %s stopped; run the same command again to continue it.\n", req.file)
				return errInterrupted
			}
			if err != nil {
				return err
			}
			switch {
			case wait:
				return waitImage(cmd, c, id, o)
			case o.json():
				var raw json.RawMessage
				if err := c.get(cmd.Context(), imageURL(id), &raw); err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  uploaded; follow it with: cloudimages images wait %s\n", id, id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.pool, "pool", "", "the pool to put the image in (required)")
	f.StringVar(&req.name, "name", "", "the image's name (default: the file's name)")
	f.StringVar(&req.checksum, "checksum", "", "sha256:HEX or sha512:HEX the file must have (default: computed and recorded)")
	f.StringVar(&req.format, "format", "", "the disk format the file must be (qcow2, raw, vmdk, vhd, vhdx, vdi, iso): other bytes are refused")
	f.BoolVar(&wait, "wait", false, "after the upload, show the image's progress until it is READY (exit 0), FAILED or CANCELLED (exit 1)")
	cmd.RegisterFlagCompletionFunc("pool", completePools(cfg))
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(
		diskimage.Formats, cobra.ShellCompDirectiveNoFileComp))
	o.register(cmd)
	return cmd
}

// sendUpload uploads req.file and returns the id of the image it
// becomes, with the bytes sent shown on w.
func sendUpload(ctx context.Context, c *conn, req uploadRequest, w io.Writer) (string, error) {
	view := newUploadView(w, req.name)
	defer view.end()
	return tusUpload(ctx, c, req, view.show)
}

// tusUpload sends the file with the tus client of /v1/uploads: it
// creates the upload, or resumes the one made for the same file before,
// sends the rest, and returns the upload's image id.
func tusUpload(ctx context.Context, c *conn, req uploadRequest, progress func(done, total int64, rate float64, resumed bool)) (string, error) {
	tc := &tusclient.Client{BaseURL: c.BaseURL, Token: c.Token}
	up := tusclient.Upload{Path: req.file, PoolID: req.pool, Name: req.name, Checksum: req.checksum, Format: req.format}
	res, err := tc.Do(ctx, up, func(p tusclient.Progress) { progress(p.Done, p.Total, p.BytesPerSecond, p.Resumed) })
	return res.ImageID, c.explain(err)
}
