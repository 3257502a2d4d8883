package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/imagestate"
)

func imagesLs(cfg *clientConfig) *cobra.Command {
	var pool, status string
	var pageSize int
	var o output
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list images, newest first (every page of them)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if pool != "" {
				q.Set("pool_id", pool)
			}
			if status != "" {
				q.Set("status", strings.ToUpper(status))
			}
			if pageSize < 0 {
				return usagef("--page-size %d: want a positive number, or 0 for the API's default", pageSize)
			} else if pageSize > 0 {
				q.Set("limit", strconv.Itoa(pageSize))
			}
			items, err := c.list(cmd.Context(), "/v1/images", q)
			if err != nil {
				return err
			}
			if o.json() {
				return printItems(cmd.OutOrStdout(), items)
			}
			imgs, err := unmarshal[api.Image](items)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(imgs))
			for _, i := range imgs {
				rows = append(rows, []string{i.ID, orDash(i.Name), i.PoolID, orDash(imageNode(i)), statusText(i),
					bytesText(i.SizeBytes), orDash(i.Format), ago(&i.CreatedAt)})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "NAME", "POOL", "NODE", "STATUS", "SIZE", "FORMAT", "AGE"}, rows)
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "only the images of this pool")
	cmd.Flags().StringVar(&status, "status", "", "only images in this status: PENDING, DOWNLOADING, VERIFYING, CONVERTING, READY, FAILED, CANCELLED")
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "images asked for per request, up to 1000 (0: the API's default, 100); every page is listed either way")
	cmd.RegisterFlagCompletionFunc("pool", completePools(cfg))
	cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(
		imagestate.Statuses, cobra.ShellCompDirectiveNoFileComp))
	o.register(cmd)
	return cmd
}

func imagesGet(cfg *clientConfig) *cobra.Command {
	return idCommand(cfg, "get ID", "show one image", "the image's ID", nil, completeImages(cfg),
		func(cmd *cobra.Command, c *conn, id string, o output) error {
			return getAndDescribe(cmd, c, imageURL(id), o, describeImage)
		})
}

func imagesRm(cfg *clientConfig) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"remove", "delete"},
		Short:   "cancel a download, or remove an image and its file from its pool",
		Long: "Cancels a download in flight (its partial data is removed), or removes a finished image:\n" +
			"a READY image's file is removed from its pool by a node that serves the pool.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("want the ID of at least one image")
			}
			return nil
		},
		ValidArgsFunction: completeImages(cfg),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			var failed error
			for _, id := range args {
				path := imageURL(id)
				if force {
					path += "?force=true"
				}
				status, err := c.Call(cmd.Context(), http.MethodDelete, path, nil, nil)
				switch {
				case err != nil:
					failed = c.explain(err)
					if msg, ok := apiErrorText(failed); ok && len(args) > 1 {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", id, msg)
					}
				case status == http.StatusAccepted:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: cancelling the download; its partial data is removed\n", id)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: removed\n", id)
				}
			}
			if failed != nil && len(args) > 1 {
				return silentExit(1)
			}
			return failed
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove a READY image's record even when no node can remove its file (the file is left behind)")
	return cmd
}

// imageNode is the node doing, or that did, the download.
func imageNode(i api.Image) string {
	if i.NodeID != "" {
		return i.NodeID
	}
	return i.Progress.NodeID
}

// statusText is the status column: with the percentage while the image
// moves, with the error's code once it failed.
func statusText(i api.Image) string {
	switch {
	case i.Error != nil:
		return i.Status + " (" + i.Error.Code + ")"
	case !i.Terminal() && i.Progress.BytesTotal > 0:
		return fmt.Sprintf("%s %.0f%%", i.Status, i.Progress.Percent)
	}
	return i.Status
}

// describeImage prints one image for people, a field a line.
func describeImage(w io.Writer, i api.Image) error {
	src := i.SourceURL
	if i.CatalogID != "" {
		src = "catalog " + i.CatalogID + " (" + i.SourceURL + ")"
	}
	fields := [][2]string{
		{"ID", i.ID}, {"Name", i.Name}, {"Status", i.Status}, {"Pool", i.PoolID}, {"Node", imageNode(i)},
		{"Source", src}, {"File", i.FileName}, {"Path", i.Path}, {"Size", bytesText(i.SizeBytes)},
		{"Checksum", i.Checksum}, {"Format", i.Format}, {"File checksum", i.FileChecksum},
	}
	if i.Unverified {
		fields = append(fields, [2]string{"Verified", "no: downloaded without a checksum to check"})
	}
	if !i.Terminal() {
		fields = append(fields, [2]string{"Progress", progressText(i, true)})
	}
	if i.Error != nil {
		fields = append(fields, [2]string{"Error", i.Error.Code + ": " + i.Error.Message})
	}
	for _, f := range i.Failovers {
		fields = append(fields, [2]string{"Failover", fmt.Sprintf("from %s at %s: %s", f.NodeID, f.At.Format(time.RFC3339), f.Reason)})
	}
	fields = append(fields, [2]string{"Workflow", i.WorkflowID}, [2]string{"Created", i.CreatedAt.Format(time.RFC3339)})
	if i.ReadyAt != nil {
		fields = append(fields, [2]string{"Ready", i.ReadyAt.Format(time.RFC3339)})
	}
	rows := make([][]string, 0, len(fields))
	for _, f := range fields {
		if f[1] != "" {
			rows = append(rows, []string{f[0] + ":", f[1]})
		}
	}
	return printTable(w, []string{}, rows)
}
