package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the final table: a measured figure, the goal it is
// held to (empty when there is none) and whether it met it.
type row struct {
	Part   string
	Metric string
	Value  string
	Goal   string
	Status string // "ok", "MISS", "n/a" or "" (no goal)
	Note   string
}

// report collects rows as the parts run, so a part that fails still leaves
// the rows of the parts before it.
type report struct {
	rows []row
}

func (r *report) add(part, metric, value string) {
	r.rows = append(r.rows, row{Part: part, Metric: metric, Value: value})
}

// goal adds a row checked against a goal.
func (r *report) goal(part, metric, value, goal string, met bool) {
	status := "ok"
	if !met {
		status = "MISS"
	}
	r.rows = append(r.rows, row{Part: part, Metric: metric, Value: value, Goal: goal, Status: status})
}

// skip records that a part could not run, and why.
func (r *report) skip(part, why string) {
	r.rows = append(r.rows, row{Part: part, Metric: "-", Value: "not run", Status: "n/a", Note: why})
}

// note attaches a remark to the last row.
func (r *report) note(format string, args ...any) {
	if len(r.rows) > 0 {
		r.rows[len(r.rows)-1].Note = fmt.Sprintf(format, args...)
	}
}

// markdown prints the table as Markdown, for BENCHMARKS.md and the terminal.
func (r *report) markdown(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| part\t| metric\t| value\t| goal\t| status\t| note\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", x.Part, x.Metric, x.Value, x.Goal, x.Status, x.Note)
	}
	tw.Flush()
}

// misses counts rows that missed their goal.
func (r *report) misses() int {
	n := 0
	for _, x := range r.rows {
		if x.Status == "MISS" {
			n++
		}
	}
	return n
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile (p in 0..100).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func rate(bytes int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB/s", float64(bytes)/(1<<20)/d.Seconds())
}
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func ratio(x float64) string    { return fmt.Sprintf("%.2f×", x) }

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}
