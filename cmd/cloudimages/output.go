package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

// output is the -o flag of the client commands: a table for people, or
// the API's JSON as it answered, for scripts.
type output struct{ format string }

func (o *output) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", envOr(envOutput, "table"), "table or json (env "+envOutput+")")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

func (o *output) check() error {
	if o.format != "table" && o.format != "json" {
		return usagef("-o %q: want table or json", o.format)
	}
	return nil
}

func (o *output) json() bool { return o.format == "json" }

// printJSON prints v indented, as a script reads it with jq.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printItems prints a list as the API shapes one: {"items": [...]}.
func printItems(w io.Writer, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	return printJSON(w, map[string]any{"items": items})
}

// printTable prints rows under header (if any), in aligned columns.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// bytesText is a size for people: "1.2 GiB"; "-" when unknown.
func bytesText(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}

// ago is how long ago t was, coarsely: "5m", "3h", "2d"; "-" for never.
func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := time.Since(*t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// orDash shows an empty value as "-", so columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// idCommand is a client command that takes one ID and prints with -o:
// `images get|wait ID`, `distributions get|wait ID`. run gets the API
// connection once the flags are good.
func idCommand(cfg *clientConfig, use, short, what string, aliases []string, complete cobra.CompletionFunc,
	run func(cmd *cobra.Command, c *conn, id string, o output) error) *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:               use,
		Aliases:           aliases,
		Short:             short,
		Args:              exactArgs(1, what),
		ValidArgsFunction: complete,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			c, err := cfg.client(cmd)
			if err != nil {
				return err
			}
			return run(cmd, c, args[0], o)
		},
	}
	o.register(cmd)
	return cmd
}

// getAndDescribe GETs one resource and prints it: the API's JSON as it
// answered with -o json, else describe's text of it.
func getAndDescribe[T any](cmd *cobra.Command, c *conn, url string, o output, describe func(io.Writer, T) error) error {
	var raw json.RawMessage
	if err := c.get(cmd.Context(), url, &raw); err != nil {
		return err
	}
	if o.json() {
		return printJSON(cmd.OutOrStdout(), raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return describe(cmd.OutOrStdout(), v)
}
