package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/source"
)

// download is the state of one run of DownloadImageWorkflow. Everything
// the progress query, the search attributes and Temporal Web show comes
// from here, so they always agree.
type download struct {
	in        Input
	imageID   string
	src       source.Source
	plan      activities.Plan
	status    string
	nodeID    string
	attempt   int
	progress  Progress
	failovers []Failover
	failed    []string // nodes that failed in this download
	// mayReturn are the nodes of failed that were only unreachable: the
	// pick takes one back when no other node can take the download.
	mayReturn []string
	// leftBehind are the nodes of a local pool left while unreachable:
	// their partial data is removed once the download goes on elsewhere,
	// and resumed should such a node be picked again.
	leftBehind []string
	jobStarted bool // a node-side job may exist on nodeID
	published  bool // the node published the file: it is the image's, or must go
	// waitingUntil and waitingMessage: the download waits for its next
	// transfer window (PENDING), until then.
	waitingUntil   *time.Time
	waitingMessage string
	recording      workflow.Mutex
	upload         bool // an upload: its node must receive uploads
	// peer is the copy the current job reads from (nil: the mirror), and
	// deadPeers the copies (image ids) that failed this download. With no
	// copy left, toMirror: the download goes to the mirror, under another
	// node-side job id (the agent holds the first as a peer copy).
	peer      *activities.PeerUsed
	deadPeers []string
	toMirror  bool
	movedAt   time.Time // when the node last reported more bytes
}

func newDownload(ctx workflow.Context, in Input) *download {
	id := in.ImageID
	if id == "" {
		// Started from the temporal CLI: the image id is in the workflow id.
		id = ImageIDFromWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID)
	}
	return &download{in: in, imageID: id, status: imagestate.Pending, failovers: []Failover{}, recording: workflow.NewMutex(ctx)}
}

// listen answers the progress query, takes in the progress the watch
// signals, and sets the search attributes that do not change.
func (d *download) listen(ctx workflow.Context) error {
	err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, d.state, workflow.QueryHandlerOptions{
		Description: "status, node, progress and failovers of the download, as in the REST API"})
	if err != nil {
		return err
	}
	signals := workflow.GetSignalChannelWithOptions(ctx, activities.ProgressSignal, workflow.SignalChannelOptions{
		Description: "progress from the activity that watches the node (sent by the worker, not by people)"})
	workflow.Go(ctx, func(ctx workflow.Context) {
		var u activities.ProgressUpdate
		for signals.Receive(ctx, &u) {
			d.onProgress(ctx, u)
		}
	})
	updates := []temporal.SearchAttributeUpdate{ImageIDKey.ValueSet(d.imageID), ImageStatusKey.ValueSet(d.status)}
	if d.in.PoolID != "" {
		updates = append(updates, PoolIDKey.ValueSet(d.in.PoolID))
	}
	if d.in.CatalogID != "" {
		updates = append(updates, CatalogIDKey.ValueSet(d.in.CatalogID))
	}
	d.upsert(ctx, updates...)
	d.showDetails(ctx)
	return nil
}

func (d *download) state() (ProgressState, error) {
	return ProgressState{Status: d.status, NodeID: d.nodeID, Progress: d.shownProgress(), Failovers: d.failovers}, nil
}

// shownProgress is the progress with the wait for a transfer window, if
// the download waits for one.
func (d *download) shownProgress() Progress {
	p := d.progress
	if d.status == imagestate.Pending && d.waitingUntil != nil {
		p.WaitingUntil, p.Message = d.waitingUntil, d.waitingMessage
	}
	return p
}

// onProgress takes in the watch's news. The bytes are only shown (the
// watch writes them to the image record itself); the node starting to
// verify, or to convert, is a change of status, which the workflow records.
func (d *download) onProgress(ctx workflow.Context, u activities.ProgressUpdate) {
	if u.NodeID != d.nodeID || imagestate.IsTerminal(d.status) {
		return // late news from a node the download has left
	}
	if u.BytesDone > d.progress.BytesDone {
		d.movedAt = workflow.Now(ctx)
	}
	d.setProgress(u.BytesDone, u.BytesTotal, u.BytesPerSecond)
	d.progress.Mirrors = u.Mirrors
	switch {
	case u.State == activities.NodeVerifying && statusBefore(d.status, imagestate.Verifying):
		d.markNodeStatus(ctx, u.NodeID, imagestate.Verifying, a.MarkVerifying)
	case u.State == activities.NodeConverting && statusBefore(d.status, imagestate.Converting):
		d.markNodeStatus(ctx, u.NodeID, imagestate.Converting, a.MarkConverting)
	default:
		d.showDetails(ctx)
	}
}

// markNodeStatus records VERIFYING or CONVERTING with mark, unless the
// download moved on (to another node, to a later status, or to its end)
// while it waited for its turn to record.
func (d *download) markNodeStatus(ctx workflow.Context, nodeID, status string, mark any) {
	if err := d.recording.Lock(ctx); err != nil {
		return // cancelled: the download ends anyway
	}
	defer d.recording.Unlock()
	if nodeID != d.nodeID || !statusBefore(d.status, status) {
		return
	}
	req := activities.VerifyingRequest{ImageID: d.imageID, NodeID: nodeID}
	err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), mark, req).Get(ctx, nil)
	if err != nil {
		// The figures still move; the next state, READY or FAILED, is
		// recorded by the main line of the workflow.
		workflow.GetLogger(ctx).Warn("mark "+strings.ToLower(status), "image_id", d.imageID, "node_id", nodeID, "error", err)
		return
	}
	d.setStatus(ctx, status)
}

// statusBefore reports whether a download in status cur may move on to
// next, a node-side status: DOWNLOADING → VERIFYING → CONVERTING.
func statusBefore(cur, next string) bool {
	switch next {
	case imagestate.Verifying:
		return cur == imagestate.Downloading
	case imagestate.Converting:
		return cur == imagestate.Downloading || cur == imagestate.Verifying
	}
	return false
}

// record runs one of the local activities that write the image's status
// or failovers, one at a time, so that they reach the database in the
// order the workflow decided them.
func (d *download) record(ctx workflow.Context, activity, req any) error {
	if err := d.recording.Lock(ctx); err != nil {
		return err
	}
	defer d.recording.Unlock()
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), activity, req).Get(ctx, nil)
}

func (d *download) setProgress(done, total int64, rate float64) {
	if total <= 0 {
		total = d.src.SizeBytes
	}
	mirrors := d.progress.Mirrors // kept until the node reports anew
	d.progress = NewProgress(done, total, rate, d.attempt, d.nodeID)
	d.progress.Mirrors = mirrors
}

func (d *download) setStatus(ctx workflow.Context, status string) {
	if d.status != status {
		d.status = status
		d.upsert(ctx, ImageStatusKey.ValueSet(status))
	}
	d.showDetails(ctx)
}

// useNode moves the download to a node. On a shared pool the new node
// resumes the partial file, so the bytes done so far still count.
func (d *download) useNode(ctx workflow.Context, nodeID string) {
	d.nodeID = nodeID
	d.attempt++
	done := int64(0)
	if d.plan.Shared {
		done = d.progress.BytesDone
	}
	d.setProgress(done, d.progress.BytesTotal, 0)
	d.upsert(ctx, NodeIDKey.ValueSet(nodeID))
	d.showDetails(ctx)
}

func (d *download) upsert(ctx workflow.Context, updates ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "image_id", d.imageID, "error", err)
	}
}

// showDetails sets what Temporal Web shows as the workflow's current
// details: the same figures as the API's.
func (d *download) showDetails(ctx workflow.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", d.status)
	if d.nodeID != "" {
		fmt.Fprintf(&b, " on node `%s` (attempt %d)", d.nodeID, d.attempt)
	}
	p := d.progress
	if p.BytesDone > 0 || p.BytesTotal > 0 {
		fmt.Fprintf(&b, "\n\n%.1f%% — %s of %s", p.Percent, size(p.BytesDone), size(p.BytesTotal))
		if p.BytesPerSecond > 0 {
			fmt.Fprintf(&b, " at %s/s", size(int64(p.BytesPerSecond)))
		}
		if p.ETASeconds != nil {
			fmt.Fprintf(&b, ", about %d s left", *p.ETASeconds)
		}
	}
	if p := d.shownProgress(); p.WaitingUntil != nil {
		fmt.Fprintf(&b, "\n\n%s", p.Message)
	}
	if len(p.Mirrors) > 1 {
		b.WriteString("\n\nmirrors:")
		for _, m := range p.Mirrors {
			fmt.Fprintf(&b, " `%s` %s;", m.URL, size(m.Bytes))
		}
	}
	for _, f := range d.failovers {
		fmt.Fprintf(&b, "\n\nfailover from `%s` at %s: %s", f.NodeID, f.At.Format("15:04:05"), f.Reason)
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
