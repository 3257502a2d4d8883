package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/source"
)

// UploadImageWorkflow owns an uploaded image, from the upload's creation
// to READY:
//  1. take the image record the API created,
//  2. pick a node of the pool whose agent receives uploads,
//  3. create the node-side upload there (the API then streams the
//     uploader's bytes to it),
//  4. watch it until the node has every byte, verified, inspected and
//     published it — or until the upload has received nothing for its TTL,
//     when it expires and its partial data is removed,
//  5. mark the image READY, or FAILED with a contract code.
//
// Unlike a download, an upload does not fail over once its node has it:
// the bytes are there, so a node that goes away is waited for (until the
// TTL). It shares the download's state, progress query, search attributes,
// cancellation and clean-up.
func UploadImageWorkflow(ctx workflow.Context, in UploadInput) (Result, error) {
	d := newDownload(ctx, Input{ImageID: in.ImageID, PoolID: in.PoolID, Name: in.Name, Checksum: in.Checksum, Format: in.Format})
	d.upload = true
	d.src = source.Source{Name: in.Name, FileName: in.FileName, SourceKey: "upload:" + d.imageID, Checksum: in.Checksum,
		SizeBytes: in.SizeBytes, Format: in.Format, Unverified: in.Checksum == ""}
	if err := d.listen(ctx); err != nil {
		return Result{}, err
	}
	res, err := d.receive(ctx, in.TTL)
	if err != nil {
		return Result{}, d.end(ctx, err)
	}
	return res, nil
}

func (d *download) receive(ctx workflow.Context, ttl time.Duration) (Result, error) {
	if err := d.ensureImage(ctx); err != nil {
		return Result{}, err
	}
	job, err := d.startUpload(ctx)
	if err != nil {
		return Result{}, err
	}
	fin, err := d.awaitUpload(ctx, job, ttl)
	if err != nil {
		return Result{}, err
	}
	return d.markReady(ctx, fin)
}

// startUpload picks a node and creates the upload there; a node that
// cannot is left for the next (no byte has reached it yet).
func (d *download) startUpload(ctx workflow.Context) (activities.Job, error) {
	for {
		node, err := d.pickNode(ctx)
		if err != nil {
			return activities.Job{}, err
		}
		d.useNode(ctx, node.NodeID)
		job := d.job(node)
		var started activities.Started
		d.jobStarted = true
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, nodeStepOptions(ctx, startOptions)), a.StartUploadOnNode, job).Get(ctx, &started)
		if err == nil {
			d.setProgress(started.BytesDone, started.BytesTotal, 0)
			err = d.record(ctx, a.MarkDownloading, activities.DownloadingRequest{ImageID: d.imageID, NodeID: node.NodeID,
				Attempt: d.attempt, Path: started.Path, BytesDone: started.BytesDone, BytesTotal: d.progress.BytesTotal})
			if err != nil {
				return activities.Job{}, err
			}
			d.setStatus(ctx, imagestate.Downloading)
			return job, nil
		}
		reason, code, ok := failoverReason(ctx, err)
		if !ok {
			return activities.Job{}, err
		}
		if err := d.failover(ctx, node.NodeID, reason, code); err != nil {
			return activities.Job{}, err
		}
	}
}

// rewatchWait is how long an upload waits before it watches its
// unreachable node again.
const rewatchWait = 2 * time.Second

// awaitUpload watches the node-side upload to its end. A node that stays
// unreachable past the watch's grace is watched again: the bytes are
// there, and an agent restarted carries on from its own offset. The
// upload expires when it has received nothing for ttl.
func (d *download) awaitUpload(ctx workflow.Context, job activities.Job, ttl time.Duration) (activities.Finished, error) {
	d.movedAt = workflow.Now(ctx)
	for {
		wctx, stopWatch := workflow.WithCancel(ctx)
		watch := workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, nodeStepOptions(ctx, watchOptions(d.plan.HeartbeatTimeout))), a.WatchDownload, job)
		if expired := d.untilDoneOrIdle(ctx, watch, ttl); expired {
			stopWatch()
			_ = watch.Get(ctx, nil) // the watch has stopped before the clean-up cancels on the node
			return activities.Finished{}, fault.New(fault.UploadExpired, "the upload received no bytes for %s (--upload-ttl): its partial data was removed; upload the file again", ttl)
		}
		stopWatch()
		var fin activities.Finished
		err := watch.Get(ctx, &fin)
		if err == nil {
			return fin, nil
		}
		reason, code, ok := failoverReason(ctx, err)
		switch {
		case !ok:
			return activities.Finished{}, err
		case code == fault.NodeUnreachable:
			workflow.GetLogger(ctx).Warn("the upload's node is unreachable; waiting for it", "image_id", d.imageID, "node_id", d.nodeID, "reason", reason)
			if err := workflow.Sleep(ctx, rewatchWait); err != nil {
				return activities.Finished{}, err
			}
		case code == "":
			return activities.Finished{}, fault.New(fault.Internal, "%s", reason)
		default:
			return activities.Finished{}, fault.New(code, "%s", reason)
		}
	}
}

// untilDoneOrIdle waits for the watch to end, or for the upload to have
// received nothing for ttl (then it reports true). The deadline moves on
// with every progress the watch signals.
func (d *download) untilDoneOrIdle(ctx workflow.Context, watch workflow.Future, ttl time.Duration) (expired bool) {
	for {
		left := d.movedAt.Add(ttl).Sub(workflow.Now(ctx))
		if left <= 0 {
			return true
		}
		tctx, stopTimer := workflow.WithCancel(ctx)
		done := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(watch, func(workflow.Future) { done = true })
		sel.AddFuture(workflow.NewTimer(tctx, left), func(workflow.Future) {})
		sel.Select(ctx)
		stopTimer()
		if done || ctx.Err() != nil {
			return false
		}
	}
}
