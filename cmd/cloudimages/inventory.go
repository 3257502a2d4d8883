package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
)

// lister is an `ls` command of a list route: the API's JSON with -o json,
// else a table of the items decoded as T.
func lister[T any](cfg *clientConfig, short, path string, header []string, row func(T) []string) *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   short,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			items, err := c.list(cmd.Context(), path, nil)
			if err != nil {
				return err
			}
			if o.json() {
				return printItems(cmd.OutOrStdout(), items)
			}
			vs, err := unmarshal[T](items)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(vs))
			for _, v := range vs {
				rows = append(rows, row(v))
			}
			return printTable(cmd.OutOrStdout(), header, rows)
		},
	}
	o.register(cmd)
	return cmd
}

func catalogLs(cfg *clientConfig) *cobra.Command {
	return lister(cfg, "list the catalog's entries: what `images pull CATALOG_ID` takes", "/v1/catalog",
		[]string{"ID", "NAME", "OS", "VERSION", "ARCH", "FORMAT", "SIZE", "CHECKSUM"},
		func(e catalog.Entry) []string {
			sum := "vendor file" // fetched from checksum_url at download time
			if e.Checksum != "" {
				sum = "pinned"
			}
			return []string{e.ID, e.Name, orDash(e.OS), orDash(e.Version), orDash(e.Arch), orDash(e.Format), bytesText(e.SizeBytes), sum}
		})
}

func nodesLs(cfg *clientConfig) *cobra.Command {
	return lister(cfg, "list the nodes, their agents' status and the pools they report", "/v1/nodes",
		[]string{"ID", "NAME", "ADDRESS", "STATUS", "POOLS", "DOWNLOADS", "LAST SEEN"},
		func(n api.Node) []string {
			return []string{n.ID, orDash(n.Name), n.Address, n.Status, orDash(strings.Join(n.Pools, ",")),
				strconv.Itoa(n.ActiveDownloads), ago(n.LastSeenAt)}
		})
}

func poolsLs(cfg *clientConfig) *cobra.Command {
	return lister(cfg, "list the storage pools, their nodes and free space", "/v1/pools",
		[]string{"ID", "NAME", "TYPE", "SHARED", "NODES", "IMAGE FORMAT", "FREE", "TOTAL"},
		func(p api.Pool) []string {
			free, total := "-", "-"
			if p.FreeBytes != nil && p.TotalBytes != nil {
				free, total = bytesText(int64(*p.FreeBytes)), bytesText(int64(*p.TotalBytes))
			}
			return []string{p.ID, orDash(p.Name), p.Type, strconv.FormatBool(p.Shared), orDash(strings.Join(p.NodeIDs, ",")),
				orDash(p.ImageFormat), free, total}
		})
}

// completer completes from the first page of a list route: each item's
// id, with a short description. Completion must be quick and quiet: any
// error completes nothing.
func completer[T any](cfg *clientConfig, path string, describe func(T) (id, desc string)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, err := cfg.client(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c.Timeout = 3 * time.Second
		var page struct {
			Items []T `json:"items"`
		}
		if err := c.get(context.Background(), path, &page); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out := make([]cobra.Completion, 0, len(page.Items))
		for _, v := range page.Items {
			id, desc := describe(v)
			out = append(out, cobra.CompletionWithDesc(id, desc))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completePools(cfg *clientConfig) cobra.CompletionFunc {
	return completer(cfg, "/v1/pools", func(p api.Pool) (string, string) { return p.ID, p.Name })
}

func completeNodes(cfg *clientConfig) cobra.CompletionFunc {
	return completer(cfg, "/v1/nodes", func(n api.Node) (string, string) { return n.ID, n.Status })
}

func completeCatalog(cfg *clientConfig) cobra.CompletionFunc {
	return completer(cfg, "/v1/catalog", func(e catalog.Entry) (string, string) { return e.ID, e.Name })
}

func completeImages(cfg *clientConfig) cobra.CompletionFunc {
	return completer(cfg, "/v1/images", func(i api.Image) (string, string) {
		return i.ID, fmt.Sprintf("%s in %s, %s", i.Name, i.PoolID, i.Status)
	})
}
