package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/transferwindow"
)

// transferWindowsChange is the change that made downloads wait for, and
// pause at the end of, their pool's transfer windows. Runs recorded before
// it had no windows in their plan and replay without.
const transferWindowsChange = "transfer-windows"

// windowNow is where the download stands in its transfer windows now:
// open or not, until when, and the message that says so. Err is set when
// the windows cannot be read.
type windowNow struct {
	transferwindow.State
	Message string `json:"message"`
	Err     string `json:"err,omitempty"`
}

// window says where the download stands in its pool's transfer windows;
// false when it has none (any time will do). The answer is recorded in the
// history (a side effect): time zone rules are data that may differ from
// one worker's build to the next, and a replay must see what the run saw.
func (d *download) window(ctx workflow.Context) (windowNow, bool) {
	if len(d.plan.TransferWindows) == 0 ||
		workflow.GetVersion(ctx, transferWindowsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return windowNow{}, false
	}
	now := workflow.Now(ctx)
	windows, zone := d.plan.TransferWindows, d.plan.TimeZone
	var w windowNow
	err := workflow.SideEffect(ctx, func(workflow.Context) any { return judgeWindow(windows, zone, now) }).Get(&w)
	if err != nil {
		w.Err = err.Error()
	}
	return w, true
}

// judgeWindow reads the windows and places now in them.
func judgeWindow(windows []string, zone string, now time.Time) windowNow {
	s, err := transferwindow.Parse(windows, zone)
	if err != nil {
		return windowNow{Err: err.Error()}
	}
	w := windowNow{State: s.At(now)}
	if zone == "" {
		zone = "UTC"
	}
	if !w.Open {
		w.Message = fmt.Sprintf("waiting for a transfer window (%s, %s) until %s", strings.Join(s.Strings(), ", "), zone,
			w.Until.In(s.Location).Format("2006-01-02 15:04 MST"))
	}
	return w
}

// waitForWindow returns at once when the download may transfer now;
// otherwise the image is PENDING, says until when, and the workflow sleeps
// (a durable timer) until the next window opens.
func (d *download) waitForWindow(ctx workflow.Context) error {
	for {
		w, ok := d.window(ctx)
		switch {
		case !ok || w.Open:
			d.waitingUntil, d.waitingMessage = nil, ""
			return nil
		case w.Err != "":
			return fault.New(fault.InvalidRequest, "pool %q: %s: fix the pool's transfer windows (or the worker's --transfer-windows)", d.plan.PoolID, w.Err)
		}
		until := w.Until
		d.waitingUntil, d.waitingMessage = &until, w.Message
		workflow.GetLogger(ctx).Info("waiting for a transfer window", "image_id", d.imageID, "pool_id", d.plan.PoolID, "until", until)
		if err := d.record(ctx, a.MarkWaiting, activities.WaitingRequest{ImageID: d.imageID, Until: until, Message: w.Message}); err != nil {
			return err
		}
		d.setProgress(d.progress.BytesDone, d.progress.BytesTotal, 0)
		d.setStatus(ctx, imagestate.Pending)
		if err := workflow.Sleep(ctx, until.Sub(workflow.Now(ctx))); err != nil {
			return err
		}
	}
}

// watchOn watches the node's job to its end. When the transfer window
// closes first while the node still transfers, it stops the watch and
// pauses the job on the node (its partial data kept): paused is then true
// and the caller waits for the next window. A node whose agent cannot
// pause, or a job already past its transfer (verifying, converting), runs
// on to its end.
func (d *download) watchOn(ctx workflow.Context, node activities.Candidate, job activities.Job) (fin activities.Finished, paused bool, err error) {
	wctx := workflow.WithActivityOptions(ctx, nodeStepOptions(ctx, watchOptions(d.plan.HeartbeatTimeout)))
	w, ok := d.window(ctx)
	if !ok || w.Until.IsZero() || !node.Pauses {
		if ok && !w.Until.IsZero() {
			workflow.GetLogger(ctx).Warn("the node's agent cannot pause: the download runs past the end of its transfer window; upgrade the agent",
				"image_id", d.imageID, "node_id", node.NodeID)
		}
		err = workflow.ExecuteActivity(wctx, a.WatchDownload, job).Get(ctx, &fin)
		return fin, false, err
	}
	watchCtx, stopWatch := workflow.WithCancel(wctx)
	watch := workflow.ExecuteActivity(watchCtx, a.WatchDownload, job)
	timerCtx, stopTimer := workflow.WithCancel(ctx)
	left := w.Until.Sub(workflow.Now(ctx))
	if !w.Open {
		left = 0 // closed while the node was picked and started: pause at once
	}
	closes := workflow.NewTimer(timerCtx, left)
	closed := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(watch, func(workflow.Future) {})
	sel.AddFuture(closes, func(f workflow.Future) { closed = f.Get(ctx, nil) == nil })
	sel.Select(ctx)
	if !closed || d.status != imagestate.Downloading {
		stopTimer()
		err = watch.Get(ctx, &fin)
		return fin, false, err
	}
	workflow.GetLogger(ctx).Info("transfer window closed: pausing the download", "image_id", d.imageID, "node_id", node.NodeID)
	stopWatch()
	if err := watch.Get(ctx, &fin); err == nil {
		return fin, false, nil // it finished as the window closed
	} else if !temporal.IsCanceledError(err) || ctx.Err() != nil {
		return fin, false, err
	}
	var p activities.Paused
	req := activities.CancelRequest{NodeID: node.NodeID, DownloadID: job.DownloadID}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, pauseOptions), a.PauseOnNode, req).Get(ctx, &p); err != nil {
		return fin, false, err
	}
	if p.State != activities.NodePaused {
		// Past its transfer when the pause came: watch it to its end.
		err = workflow.ExecuteActivity(wctx, a.WatchDownload, job).Get(ctx, &fin)
		return fin, false, err
	}
	d.setProgress(p.BytesDone, d.progress.BytesTotal, 0)
	return fin, true, nil
}
