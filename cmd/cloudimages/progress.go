package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/quantix/cloudimages/api"
)

// progressView shows an image's snapshots as they come: a bar on a
// terminal, a line now and then elsewhere (a log, a CI job).
type progressView interface {
	show(api.Image)
	// end closes the view before the final word is printed.
	end()
}

// newProgressView returns the view that suits w.
func newProgressView(w io.Writer) progressView {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barView{w: w}
	}
	return &lineView{w: w, every: 2 * time.Second}
}

// progressText is an image's progress for people: status, percentage
// (unless a bar shows it), bytes, speed, ETA and node, the figures the API
// reports.
func progressText(i api.Image, percent bool) string {
	p := i.Progress
	parts := []string{i.Status}
	if percent && p.BytesTotal > 0 {
		parts = append(parts, fmt.Sprintf("%.1f%%", p.Percent))
	}
	switch {
	case p.BytesTotal > 0:
		parts = append(parts, bytesText(p.BytesDone)+" of "+bytesText(p.BytesTotal))
	case p.BytesDone > 0:
		parts = append(parts, bytesText(p.BytesDone))
	}
	if p.BytesPerSecond > 0 {
		parts = append(parts, bytesText(int64(p.BytesPerSecond))+"/s")
	}
	if p.ETASeconds != nil {
		parts = append(parts, "eta "+(time.Duration(*p.ETASeconds)*time.Second).String())
	}
	if n := imageNode(i); n != "" {
		parts = append(parts, "on "+n)
	}
	if p.Attempt > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d", p.Attempt))
	}
	return strings.Join(parts, "  ")
}

// lineView prints a line when the status changes, and at most one every
// `every` while it downloads.
type lineView struct {
	w          io.Writer
	every      time.Duration
	lastStatus string
	lastLine   time.Time
}

func (v *lineView) show(i api.Image) {
	if i.Status == v.lastStatus && time.Since(v.lastLine) < v.every {
		return
	}
	v.lastStatus, v.lastLine = i.Status, time.Now()
	fmt.Fprintf(v.w, "%s  %s\n", i.ID, progressText(i, true))
}

func (v *lineView) end() {}

// barView draws a progress bar of the bytes done, with the API's figures
// beside it; it is a spinner until the size is known.
type barView struct {
	w   io.Writer
	bar *progressbar.ProgressBar
	max int64
}

func (v *barView) show(i api.Image) {
	total := i.Progress.BytesTotal
	if total <= 0 {
		total = -1
	}
	// A bar keeps its count modulo an unknown size: once the size is
	// known (or changes), a new bar replaces the spinner.
	if v.bar == nil || total != v.max {
		if v.bar != nil {
			v.bar.Clear()
		}
		v.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSpinnerType(14),
			// No spinner goroutine: it would outlive the bar it belongs
			// to. The spinner turns with each snapshot instead.
			progressbar.OptionSetSpinnerChangeInterval(0),
		)
		v.max = total
	}
	v.bar.Set64(i.Progress.BytesDone)
	v.bar.Describe(progressText(i, false)) // renders: the bar shows the percentage
}

func (v *barView) end() {
	if v.bar != nil {
		v.bar.Exit()
		fmt.Fprintln(v.w)
	}
}
