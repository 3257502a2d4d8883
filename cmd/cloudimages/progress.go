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

// progressText is an image's progress for people: status, percentage,
// bytes, speed, ETA and node, the figures the API reports.
func progressText(i api.Image) string {
	p := i.Progress
	parts := []string{i.Status}
	switch {
	case p.BytesTotal > 0:
		parts = append(parts, fmt.Sprintf("%.1f%%", p.Percent), bytesText(p.BytesDone)+" of "+bytesText(p.BytesTotal))
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
	fmt.Fprintf(v.w, "%s  %s\n", i.ID, progressText(i))
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
	if v.bar == nil {
		v.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSpinnerType(14),
		)
		v.max = total
	}
	if total != v.max {
		v.bar.ChangeMax64(total)
		v.max = total
	}
	v.bar.Describe(progressText(i))
	v.bar.Set64(i.Progress.BytesDone)
}

func (v *barView) end() {
	if v.bar != nil {
		v.bar.Exit()
		fmt.Fprintln(v.w)
	}
}
