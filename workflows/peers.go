package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
)

// downloadID is the node-side job id: the image's, and after the copy's
// source failed it, a new one per source (the agent holds one request per
// id, and the next source is another request).
func (d *download) downloadID() string {
	if d.switches == 0 {
		return d.imageID
	}
	return fmt.Sprintf("%s-s%d", d.imageID, d.switches)
}

// peerFailed reports whether a copy from a peer failed because of its
// source (activities.PeerFailedError), not of the target.
func (d *download) peerFailed(ctx workflow.Context, err error) bool {
	if err == nil || d.peer == nil || ctx.Err() != nil {
		return false
	}
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.PeerFailedError
}

// leavePeer gives up the copy's source: it is not asked again in this
// download, the failed job and its partial data are removed from the
// target (in the background: the target is fine), and the next job reads
// from the next READY copy, or from the mirror when none is left.
func (d *download) leavePeer(ctx workflow.Context, job activities.Job) {
	workflow.GetLogger(ctx).Warn("the copy's source failed; copying from another", "image_id", d.imageID,
		"source_image_id", d.peer.ImageID, "source_node_id", d.peer.NodeID, "node_id", job.NodeID)
	d.deadPeers = append(d.deadPeers, d.peer.ImageID)
	d.peer = nil
	d.switches++
	req := activities.CancelRequest{NodeID: job.NodeID, DownloadID: job.DownloadID}
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.CancelOnNode, req)
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("remove the job whose source failed", "image_id", d.imageID, "node_id", job.NodeID, "error", err)
		}
	})
}

// poolFull reports whether every node tried so far gave up because its
// disk was full.
func (d *download) poolFull() bool {
	for _, f := range d.failovers {
		if f.Code != fault.DiskFull {
			return false
		}
	}
	return len(d.failovers) > 0
}

func (d *download) fullMessage() string {
	var tried []string
	for _, f := range d.failovers {
		tried = append(tried, fmt.Sprintf("%s (%s)", f.NodeID, f.Reason))
	}
	return fmt.Sprintf("pool %q has no room for the image on any node tried: %s. Free space in the pool (or lower its agents' --min-free), then post the distribution again to retry this pool.",
		d.plan.PoolID, strings.Join(tried, "; "))
}
