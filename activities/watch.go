package activities

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// ProgressUpdate is the payload of ProgressSignal.
type ProgressUpdate struct {
	NodeID         string  `json:"node_id"`
	State          string  `json:"state"` // the node-side job's state
	BytesDone      int64   `json:"bytes_done"`
	BytesTotal     int64   `json:"bytes_total"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	// Mirrors are the bytes each mirror served, from agents that say.
	Mirrors []imagestate.MirrorBytes `json:"mirrors,omitempty"`
}

// WatchDetails are the watch's heartbeat details: what Temporal Web shows
// of the running activity, and what a retried attempt (after its worker
// died) re-attaches with — the node and the job — instead of starting the
// transfer again. UnreachableSince carries the grace period across workers.
type WatchDetails struct {
	NodeID           string     `json:"node_id"`
	DownloadID       string     `json:"download_id"`
	State            string     `json:"state"`
	BytesDone        int64      `json:"bytes_done"`
	BytesTotal       int64      `json:"bytes_total"`
	BytesPerSecond   float64    `json:"bytes_per_second"`
	UnreachableSince *time.Time `json:"unreachable_since,omitempty"`
	// Mirrors are the bytes each mirror served, from agents that say.
	Mirrors []imagestate.MirrorBytes `json:"mirrors,omitempty"`
}

// Finished is a completed node-side download. Checksum is of the bytes
// downloaded, FileChecksum of the published file; Format, VirtualSizeBytes
// and Compression are what the node found (empty from an agent that does
// not report them).
type Finished struct {
	NodeID           string
	Path             string
	SizeBytes        int64
	Checksum         string
	Format           string
	VirtualSizeBytes int64
	Compression      string
	FileChecksum     string
	// Mirrors are the bytes each mirror served, as the node last said:
	// the watch writes no progress for the poll that saw the job complete
	// (MarkReady follows at once), so the final figures travel here.
	Mirrors []imagestate.MirrorBytes `json:",omitempty"`
}

// WatchDownload follows the node-side job until it ends, heartbeating its
// progress, writing the bytes done to the database every few seconds and
// signalling them, and every change of the job's state, to the workflow
// (which records the status). It never starts the job: a retried attempt carries on
// with the same job. A node that stays unreachable longer than the grace
// period, or whose job fails in a way another node may not, is a
// FailoverError; an error of the image itself is fatal with its code.
func (a *Activities) WatchDownload(ctx context.Context, job Job) (Finished, error) {
	c, _, err := a.node(ctx, job.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return Finished{}, failover(fault.NodeUnreachable, "node %s was deleted", job.NodeID)
	} else if err != nil {
		return Finished{}, err
	}
	w := &watch{a: a, job: job, client: c, s: a.settings(), began: time.Now(),
		longPoll: slices.Contains(job.NodeFeatures, agentclient.FeatureLongPoll)}
	w.details = WatchDetails{NodeID: job.NodeID, DownloadID: job.DownloadID}
	if activity.HasHeartbeatDetails(ctx) {
		var prev WatchDetails
		if activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.NodeID == job.NodeID && prev.DownloadID == job.DownloadID {
			w.details = prev
			activity.GetLogger(ctx).Info("re-attached to the node's download", "image_id", job.ImageID, "node_id", job.NodeID,
				"bytes_done", prev.BytesDone)
		}
	}
	return w.run(ctx)
}

type watch struct {
	a          *Activities
	began      time.Time
	job        Job
	client     *agentclient.Client
	s          Settings
	details    WatchDetails
	lastStored time.Time
	lastSignal time.Time
	lastState  string
	crash      crashCheck
	// longPoll: the node's agent has FeatureLongPoll; version is the
	// Download's version it last answered with.
	longPoll bool
	version  int64
}

func (w *watch) run(ctx context.Context) (Finished, error) {
	tick := time.NewTicker(w.s.PollInterval)
	defer tick.Stop()
	for {
		res, done, answered, err := w.poll(ctx)
		if done || err != nil {
			return res, err
		}
		if answered && w.longPoll {
			// The agent held the answer until something changed (or its
			// wait was over): ask again at once.
			continue
		}
		select {
		case <-ctx.Done():
			return Finished{}, ctx.Err()
		case <-activity.GetWorkerStopChannel(ctx):
			return Finished{}, workerStopping()
		case <-tick.C:
		}
	}
}

// workerStopping gives the attempt back now, rather than after the
// heartbeat timeout: the next worker re-attaches at once.
func workerStopping() error {
	return retryable("worker_stopping", "the worker is stopping; the next attempt re-attaches to the node's download")
}

// poll asks the node once: a long-poll from the version last seen when
// its agent has FeatureLongPoll, else a plain GET. done means the job
// ended well; answered, that the node answered.
func (w *watch) poll(ctx context.Context) (fin Finished, done, answered bool, err error) {
	// A poll must end before the heartbeat deadline: an agent that accepts
	// the connection but never answers (frozen, SIGSTOP, a half-dead
	// network) would otherwise time the attempt out before it could count
	// the node as unreachable, and every retry would hang the same way.
	// A long-poll may take its wait more; a node that did not answer the
	// last poll is asked plainly, so that its grace is not stretched by
	// a wait and a node that is back answers at once.
	asked, timeout := time.Now(), w.pollLimit()
	longPoll := w.longPoll && w.details.UnreachableSince == nil
	if longPoll {
		timeout += w.longPollWait()
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	go func() {
		// A worker that stops ends a long-poll in flight: it gives the
		// attempt back at once.
		select {
		case <-activity.GetWorkerStopChannel(ctx):
			cancel()
		case <-pctx.Done():
		}
	}()
	var d agentclient.Download
	if longPoll {
		d, err = w.client.DownloadAfter(pctx, w.job.DownloadID, w.version, w.longPollWait())
	} else {
		d, err = w.client.Download(pctx, w.job.DownloadID)
	}
	timedOut := errors.Is(pctx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return Finished{}, false, false, ctx.Err()
		}
		if workerStopped(ctx) {
			return Finished{}, false, false, workerStopping()
		}
		fe := fault.From(err)
		if timedOut {
			fe = fault.Retryable(fault.NodeUnreachable, "node %s did not answer within %s", w.job.NodeID, timeout.Round(time.Millisecond))
		} else if down := w.crashed(ctx, err); down != "" {
			return Finished{}, false, false, failover(fault.NodeUnreachable, "node %s is down: %s", w.job.NodeID, down)
		}
		return Finished{}, false, false, w.unreachable(ctx, fe, asked)
	}
	if w.longPoll && d.Version == 0 {
		// An agent without long-polls now (a downgrade since the node was
		// picked) answered at once: ask it once a PollInterval again.
		activity.GetLogger(ctx).Info("the node's agent does not long-poll: polling it", "image_id", w.job.ImageID, "node_id", w.job.NodeID)
		w.longPoll = false
	}
	w.version = d.Version
	w.details.UnreachableSince = nil
	w.details.State, w.details.BytesDone, w.details.BytesPerSecond = d.State, d.BytesDone, d.BytesPerSecond
	w.details.BytesTotal = orSize(d.BytesTotal, w.job.SizeBytes)
	w.details.Mirrors = mirrorBytes(d.Mirrors)
	activity.RecordHeartbeat(ctx, w.details)
	if d.State == agentclient.StateCompleted {
		// MarkReady records the figures and the status right after: a
		// progress write and a signal now would only delay it (the
		// signal is a workflow task of its own before the activity's).
		return Finished{NodeID: w.job.NodeID, Path: d.Path, SizeBytes: d.BytesDone, Checksum: d.Checksum, Format: d.Format,
			VirtualSizeBytes: d.VirtualSizeBytes, Compression: d.Compression, FileChecksum: d.FileChecksum, Mirrors: w.details.Mirrors}, true, true, nil
	}
	w.report(ctx)
	switch d.State {
	case agentclient.StateWaitingCredential:
		return Finished{}, false, true, w.resendCredential(ctx)
	case agentclient.StateFailed:
		return Finished{}, false, true, w.failed(d.Error)
	case agentclient.StateCancelled:
		return Finished{}, false, true, failover(fault.Cancelled, "node %s: the download was cancelled on the node", w.job.NodeID)
	}
	return Finished{}, false, true, nil
}

// workerStopped reports whether the worker running the activity stops.
func workerStopped(ctx context.Context) bool {
	select {
	case <-activity.GetWorkerStopChannel(ctx):
		return true
	default:
		return false
	}
}

// longPollWait is how long the agent may hold a long-poll when nothing
// changes: half the poll timeout, so that an idle (queued, stalled) job
// costs a request every few seconds while the heartbeat stays well
// inside its timeout.
func (w *watch) longPollWait() time.Duration {
	return min(w.pollTimeout()/2, agentclient.MaxLongPollWait)
}

// pollTimeout bounds one poll of the node: well inside the heartbeat
// timeout, and never more than the client's own 10 s.
func (w *watch) pollTimeout() time.Duration {
	return min(w.s.HeartbeatTimeout/3, 10*time.Second)
}

// pollLimit is the poll timeout, cut to what is left of the grace period
// once the node is unreachable: a frozen node is failed over when its
// grace ends, not up to a poll timeout later.
func (w *watch) pollLimit() time.Duration {
	limit := w.pollTimeout()
	if since := w.details.UnreachableSince; since != nil {
		limit = min(limit, max(w.s.NodeGrace-time.Since(*since), 100*time.Millisecond))
	}
	return limit
}

// unreachable handles a failed poll, asked at asked: within the grace
// period the watch keeps trying; past it, the download fails over. The
// grace counts from the first poll that got no answer, not from when that
// poll gave up.
func (w *watch) unreachable(ctx context.Context, fe *fault.Error, asked time.Time) error {
	if fe.Code == fault.NotFound {
		return failover(fault.NotFound, "node %s no longer knows download %s", w.job.NodeID, w.job.DownloadID)
	}
	if !fe.Retryable {
		return fromNode(w.job.NodeID, fe, w.job.Shared)
	}
	now := time.Now().UTC()
	if w.details.UnreachableSince == nil {
		since := asked.UTC()
		w.details.UnreachableSince = &since
		activity.GetLogger(ctx).Warn("node unreachable", "image_id", w.job.ImageID, "node_id", w.job.NodeID, "error", fe.Message)
	}
	activity.RecordHeartbeat(ctx, w.details)
	if gone := now.Sub(*w.details.UnreachableSince); gone >= w.s.NodeGrace {
		return failover(fault.NodeUnreachable, "node %s unreachable for %s: %s", w.job.NodeID, gone.Round(time.Second), fe.Message)
	}
	return nil
}

// failed turns a failed node-side job into the activity's error: one the
// node calls retryable means another node may get past it.
func (w *watch) failed(fe *fault.Error) error {
	if fe == nil {
		return failover(fault.Internal, "node %s: the download failed without a reason", w.job.NodeID)
	}
	if w.job.PeerImageID != "" && fe.Code != fault.DiskFull {
		// A copy from a peer that fails is first the source's fault (gone,
		// killed, its file unreadable): the workflow copies from another
		// READY copy, or from the mirror, on the same target.
		return peerFailed(fe.Code, "node %s: copying image %s from its peer failed: %s: %s", w.job.NodeID, w.job.PeerImageID, fe.Code, fe.Message)
	}
	if fe.Retryable && fe.Code != fault.DiskFull {
		return failover(fe.Code, "node %s: %s: %s", w.job.NodeID, fe.Code, fe.Message)
	}
	return fromNode(w.job.NodeID, fe, w.job.Shared)
}

// report writes progress to the database and signals it to the workflow,
// each no more often than its interval, and at once when the state changes.
func (w *watch) report(ctx context.Context) {
	now := time.Now()
	changed := w.details.State != w.lastState
	if changed || now.Sub(w.lastStored) >= w.s.ProgressInterval {
		w.record(ctx)
		w.lastStored = now
	}
	if (changed || now.Sub(w.lastSignal) >= w.signalInterval(now)) && w.a.Temporal != nil {
		info := activity.GetInfo(ctx)
		err := w.a.Temporal.SignalWorkflow(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, ProgressSignal, ProgressUpdate{
			NodeID: w.job.NodeID, State: w.details.State, BytesDone: w.details.BytesDone,
			BytesTotal: w.details.BytesTotal, BytesPerSecond: w.details.BytesPerSecond, Mirrors: w.details.Mirrors})
		if err != nil {
			activity.GetLogger(ctx).Warn("signal progress", "image_id", w.job.ImageID, "error", err)
		}
		w.lastSignal = now
	}
	w.lastState = w.details.State
}

// record writes the byte progress to the image record. The status is
// not the watch's: the workflow records VERIFYING when the signal says so.
func (w *watch) record(ctx context.Context) {
	p := store.Progress{BytesDone: w.details.BytesDone, BytesTotal: w.details.BytesTotal,
		BytesPerSecond: w.details.BytesPerSecond, Attempt: w.job.Attempt, NodeID: w.job.NodeID, Mirrors: w.details.Mirrors}
	if err := w.a.Store.UpdateProgress(ctx, w.job.ImageID, p); err != nil {
		activity.GetLogger(ctx).Warn("record progress", "image_id", w.job.ImageID, "error", err)
	}
}

// orSize is the node's total when it knows it, else the expected size
// (a catalog's size is only a hint; the node's is the truth).
func orSize(total, expected int64) int64 {
	if total > 0 {
		return total
	}
	return expected
}

// signalInterval grows with the time the watch has run (a thirtieth of it,
// at most a minute), so that a download of hours adds a few hundred
// events to the workflow's history, not thousands. Temporal Web still sees
// every heartbeat, and the database every ProgressInterval.
func (w *watch) signalInterval(now time.Time) time.Duration {
	return min(max(w.s.SignalInterval, now.Sub(w.began)/30), max(w.s.SignalInterval, time.Minute))
}

// resendCredential sends the node the job's request again, with its
// credential: an agent that restarted kept no secret, and holds the job
// (StateWaitingCredential) until it has it again.
func (w *watch) resendCredential(ctx context.Context) error {
	node, err := w.a.Store.Node(ctx, w.job.NodeID)
	if err != nil {
		return asStoreError(err)
	}
	req, _, err := w.a.peerOrURLRequest(ctx, w.job, node)
	if err != nil {
		return err
	}
	if _, err := w.client.StartDownload(ctx, req); err != nil {
		activity.GetLogger(ctx).Warn("send the credential again", "image_id", w.job.ImageID, "node_id", w.job.NodeID, "error", err)
		return nil // the next poll tries again; the grace period bounds it
	}
	activity.GetLogger(ctx).Info("credential sent again to a node that restarted", "image_id", w.job.ImageID, "node_id", w.job.NodeID, "credential", w.job.Credential)
	return nil
}

// mirrorBytes is the agent's per-mirror count as the image shows it.
func mirrorBytes(in []agentclient.MirrorBytes) []imagestate.MirrorBytes {
	if in == nil {
		return nil
	}
	out := make([]imagestate.MirrorBytes, len(in))
	for i, m := range in {
		out[i] = imagestate.MirrorBytes{URL: m.URL, Bytes: m.Bytes}
	}
	return out
}
