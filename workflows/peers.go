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

// downloadID is the node-side job id: the image's, or, once a copy from
// peers gave up for the mirror, another one (the agent holds one request
// per id, and a mirror download is another request than a peer copy).
func (d *download) downloadID() string {
	if d.toMirror {
		return d.imageID + "-mirror"
	}
	return d.imageID
}

// peers are the READY copies the download may still copy from.
func (d *download) peers() []string {
	if d.toMirror {
		return nil
	}
	return d.in.Peers
}

// peerFailed reports whether a copy from peers failed because of its
// source (activities.PeerFailedError), not of the target.
func (d *download) peerFailed(ctx workflow.Context, err error) bool {
	if err == nil || len(d.peers()) == 0 || ctx.Err() != nil {
		return false
	}
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == activities.PeerFailedError
}

// leavePeer gives up the copy's source: it is not asked again in this
// download. While READY copies are left, the same node-side job is started
// again naming the next one, and resumes from the bytes it has (the agent
// keeps them: the bytes are pinned by the checksum, whichever peer sends
// them). With none left, the job and its partial data are removed (in the
// background: the target is fine) and the download goes to the mirror.
//
// A copy of an image (Input.SourceImageID) has no mirror: with no READY
// copy left, it fails (noSourceLeft), and the workflow's end removes the
// partial data.
func (d *download) leavePeer(ctx workflow.Context, job activities.Job, node activities.Candidate, err error) (activities.Job, error) {
	workflow.GetLogger(ctx).Warn("the copy's source failed", "image_id", d.imageID, "node_id", job.NodeID, "error", err)
	from := ""
	if d.peer != nil {
		from = d.peer.NodeID
		d.deadPeers = append(d.deadPeers, d.peer.ImageID)
		d.peer = nil
	}
	var appErr *temporal.ApplicationError
	var code string
	if errors.As(err, &appErr) && appErr.HasDetails() {
		_ = appErr.Details(&code)
	}
	if code == fault.NoNodeAvailable || len(d.deadPeers) >= len(d.in.Peers) {
		if d.in.SourceImageID != "" {
			return job, noSourceLeft(d.in.SourceImageID, from, code, err)
		}
		d.toMirror = true
		req := activities.CancelRequest{NodeID: job.NodeID, DownloadID: job.DownloadID}
		f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.CancelOnNode, req)
		workflow.Go(ctx, func(ctx workflow.Context) {
			if err := f.Get(ctx, nil); err != nil {
				workflow.GetLogger(ctx).Warn("remove the peer copy left for the mirror", "image_id", d.imageID, "node_id", job.NodeID, "error", err)
			}
		})
	}
	return d.job(node), nil
}

// noSourceLeft is the failure of a copy of an image none of whose READY
// copies could be read: no_node_available when none was usable to begin
// with (the activity's message names their nodes), node_unreachable when
// the copy from the last one, on node from, could not reach it, and the
// copy's own code for another fault of the source (checksum_mismatch: its
// file is not what it was). It says what to do.
func noSourceLeft(imageID, from, code string, err error) error {
	_, msg := failure(err)
	if code != fault.NoNodeAvailable {
		if from != "" {
			msg = fmt.Sprintf("the copy from node %s failed (%s)", from, msg)
		}
		switch code {
		case fault.UpstreamError, fault.UpstreamNotFound, fault.NodeUnreachable, fault.Internal, "":
			code = fault.NodeUnreachable
		}
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"%s; image %s has no mirror to download from instead: bring its node back online (or distribute another READY copy of it), then post the distribution again",
		msg, imageID), code, nil)
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
