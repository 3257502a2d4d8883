package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/diskimage"
)

// pullRequest is what `images pull` asks of POST /v1/images.
type pullRequest struct {
	name, checksum, format, node, pool string
	allowUnverified                    bool
}

// body is the request's JSON: a source that looks like a URL is one, any
// other is a catalog entry's id.
func (r pullRequest) body(source string) map[string]any {
	b := map[string]any{"pool_id": r.pool}
	if strings.Contains(source, "://") {
		b["url"] = source
	} else {
		b["catalog_id"] = source
	}
	for k, v := range map[string]string{"name": r.name, "checksum": r.checksum, "format": r.format, "node_id": r.node} {
		if v != "" {
			b[k] = v
		}
	}
	if r.allowUnverified {
		b["allow_unverified"] = true
	}
	return b
}

func imagesPull(cfg *clientConfig) *cobra.Command {
	var req pullRequest
	var wait bool
	var o output
	cmd := &cobra.Command{
		Use:   "pull CATALOG_ID|URL --pool POOL",
		Short: "start a download of a catalog entry or a URL into a pool",
		Long: "Starts a download into a pool (POST /v1/images). The same source into the same pool while one\n" +
			"is live or READY answers with that image: never a second download.\n\n" +
			"With --wait it shows the download's progress until the image is READY (exit 0) or FAILED or\n" +
			"CANCELLED (exit 1, with the error's code and message). Ctrl-C stops following, not the download.",
		Example: "  cloudimages images pull cirros-0.6.3 --pool local-1 --wait\n" +
			"  cloudimages images pull https://mirror.example/x.qcow2 --checksum sha256:HEX --pool nfs-01 --wait",
		Args:              exactArgs(1, "a catalog entry's id or a URL"),
		ValidArgsFunction: completeCatalog(cfg),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if req.pool == "" {
				return usagef("--pool is required: the pool to put the image in ('cloudimages pools ls' lists them)")
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			status, err := c.Call(cmd.Context(), http.MethodPost, "/v1/images", req.body(args[0]), &raw)
			if err != nil {
				return c.explain(err)
			}
			var img api.Image
			if err := json.Unmarshal(raw, &img); err != nil {
				return err
			}
			if wait {
				what := "started"
				if status == http.StatusOK {
					what = "already in the pool, " + img.Status
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "image %s (%s into pool %s): %s\n", img.ID, orDash(img.Name), img.PoolID, what)
				return waitImage(cmd, c, img.ID, o)
			}
			if o.json() {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			what := "download started"
			if status == http.StatusOK {
				what = "already in the pool"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s; follow it with: cloudimages images wait %s\n", img.ID, img.Status, what, img.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.pool, "pool", "", "the pool to put the image in (required)")
	f.StringVar(&req.name, "name", "", "the image's name (default: the catalog entry's, or the URL's file name)")
	f.StringVar(&req.checksum, "checksum", "", "sha256:HEX or sha512:HEX of the URL's bytes (needed for a URL unless --allow-unverified)")
	f.StringVar(&req.format, "format", "", "the disk format the URL serves (qcow2, raw, vmdk, vhd, vhdx, vdi, iso): other bytes are refused")
	f.StringVar(&req.node, "node", "", "the node to prefer for the download")
	f.BoolVar(&req.allowUnverified, "allow-unverified", false, "accept a URL without --checksum: the image is marked unverified")
	f.BoolVar(&wait, "wait", false, "show the progress until the image is READY (exit 0), FAILED or CANCELLED (exit 1)")
	cmd.RegisterFlagCompletionFunc("pool", completePools(cfg))
	cmd.RegisterFlagCompletionFunc("node", completeNodes(cfg))
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(
		diskimage.Formats, cobra.ShellCompDirectiveNoFileComp))
	o.register(cmd)
	return cmd
}

func imagesWait(cfg *clientConfig) *cobra.Command {
	return idCommand(cfg, "wait ID", "show an image's progress until it is READY (exit 0), FAILED or CANCELLED (exit 1)",
		"the image's ID", []string{"watch"}, completeImages(cfg), waitImage)
}

// waitImage follows an image until it is terminal, with progress on
// stderr, and prints how it ended: READY is a success, anything else exit
// 1 with the error's code and message. Ctrl-C stops following only; the
// download goes on, and the message says how to follow or cancel it.
func waitImage(cmd *cobra.Command, c *conn, id string, o output) error {
	view := newProgressView(cmd.ErrOrStderr())
	last, err := c.follow(cmd.Context(), id, func(s snapshot) { view.show(s.img) })
	view.end()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Stopped following image %s; its download goes on.\n"+
			"  follow it:  cloudimages images wait %s\n"+
			"  cancel it:  cloudimages images rm %s\n", id, id, id)
		return errInterrupted
	}
	if err != nil {
		return err
	}
	if o.json() {
		if err := printJSON(cmd.OutOrStdout(), last.raw); err != nil {
			return err
		}
	}
	img := last.img
	if img.Status == "READY" {
		if !o.json() {
			fmt.Fprintf(cmd.OutOrStdout(), "image %s READY at %s on %s (%s, %s, %s)\n",
				img.ID, img.Path, orDash(imageNode(img)), orDash(img.Format), bytesText(img.SizeBytes), img.Checksum)
		}
		return nil
	}
	why := ""
	if img.Error != nil {
		why = ": " + img.Error.Code + ": " + img.Error.Message
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "image %s %s%s\n", img.ID, img.Status, why)
	return silentExit(1)
}

// imageURL is an image's path in the API.
func imageURL(id string) string { return "/v1/images/" + url.PathEscape(id) }
