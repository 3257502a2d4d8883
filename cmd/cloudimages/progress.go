package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
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
	if isTerminal(w) {
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
		// No "-" for nothing done yet: "0 B of 300 MiB" reads as a start.
		parts = append(parts, humanize.IBytes(uint64(max(p.BytesDone, 0)))+" of "+bytesText(p.BytesTotal))
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
	if p.Message != "" {
		// Why a download does not move: a transfer window, no node of its
		// pool; without it PENDING alone looks stuck.
		parts = append(parts, p.Message)
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

// uploadView shows the bytes of a file sent: a bar on a terminal, a line
// every few seconds elsewhere.
type uploadView struct {
	w     io.Writer
	name  string
	bar   *progressbar.ProgressBar
	tty   bool
	said  bool // the first line, which says whether the upload resumes
	last  time.Time
	every time.Duration
}

func newUploadView(w io.Writer, name string) *uploadView {
	return &uploadView{w: w, name: name, every: 2 * time.Second, tty: isTerminal(w)}
}

// isTerminal says whether w is a terminal, where a view may draw over its
// lines; a log or a pipe gets plain lines instead.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// uploadText is the progress of an upload for people, with the
// percentage unless a bar shows it.
func uploadText(done, total int64, rate float64, percent bool) string {
	var parts []string
	if percent && total > 0 {
		parts = append(parts, fmt.Sprintf("%.1f%%", float64(done)*100/float64(total)))
	}
	parts = append(parts, humanize.IBytes(uint64(done))+" of "+bytesText(total))
	if rate > 0 {
		parts = append(parts, bytesText(int64(rate))+"/s")
		if total > done {
			parts = append(parts, "eta "+(time.Duration(float64(total-done)/rate)*time.Second).Round(time.Second).String())
		}
	}
	return strings.Join(parts, "  ")
}

func (v *uploadView) show(done, total int64, rate float64, resumed bool) {
	if !v.said {
		v.said = true
		how := "uploading"
		if resumed {
			how = "resuming the upload at " + bytesText(done)
		}
		fmt.Fprintf(v.w, "%s %s (%s)\n", how, v.name, bytesText(total))
	}
	if !v.tty {
		if time.Since(v.last) >= v.every || done == total {
			v.last = time.Now()
			fmt.Fprintf(v.w, "upload  %s\n", uploadText(done, total, rate, true))
		}
		return
	}
	if v.bar == nil {
		v.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	v.bar.Set64(done)
	v.bar.Describe(uploadText(done, total, rate, false))
}

func (v *uploadView) end() {
	if v.bar != nil {
		v.bar.Exit()
		fmt.Fprintln(v.w)
	}
}
