package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/source"
)

// a is the nil receiver through which the workflow names its activities.
var a *activities.Activities

// DownloadImageWorkflow puts one image into one pool:
//  1. resolve the source (catalog entry or URL) and its checksum,
//  2. create or update the image record,
//  3. pick a node of the pool (waiting a bounded time for one),
//  4. start the node-side download, with bounded retries,
//  5. watch it to the end, heartbeating progress,
//  6. fail over to another node when this one fails,
//  7. mark the image READY, or FAILED with a contract code.
//
// The workflow owns the image's status and failovers: it records each
// change itself (record), and the API and the watch never write them.
//
// Cancelled, it stops the node-side job, removes the partial data and
// marks the image CANCELLED.
func DownloadImageWorkflow(ctx workflow.Context, in Input) (Result, error) {
	d := newDownload(ctx, in)
	if err := d.listen(ctx); err != nil {
		return Result{}, err
	}
	res, err := d.run(ctx)
	if err != nil {
		return Result{}, d.end(ctx, err)
	}
	return res, nil
}

func (d *download) run(ctx workflow.Context) (Result, error) {
	if err := d.resolveSource(ctx); err != nil {
		return Result{}, err
	}
	if err := d.ensureImage(ctx); err != nil {
		return Result{}, err
	}
	if err := d.resolveChecksum(ctx); err != nil {
		return Result{}, err
	}
	fin, err := d.transfer(ctx)
	if err != nil {
		return Result{}, err
	}
	return d.markReady(ctx, fin)
}

func (d *download) resolveSource(ctx workflow.Context) error {
	if d.in.SourceImageID != "" {
		// A copy of a READY image: new input, so no version is needed.
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), a.ResolveImageSource, d.in.SourceImageID).Get(ctx, &d.src)
	}
	req := source.Request{CatalogID: d.in.CatalogID, URL: d.in.URL, Name: d.in.Name,
		Checksum: d.in.Checksum, PoolID: d.in.PoolID, Format: d.in.Format, AllowUnverified: d.in.AllowUnverified,
		Credential: d.in.Credential,
		Version:    d.in.Version}
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), a.ResolveSource, req).Get(ctx, &d.src)
}

func (d *download) ensureImage(ctx workflow.Context) error {
	req := activities.ImageRequest{ImageID: d.imageID, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		PoolID: d.in.PoolID, Source: d.src}
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), a.EnsureImage, req).Get(ctx, &d.plan)
}

func (d *download) resolveChecksum(ctx workflow.Context) error {
	req := activities.ChecksumRequest{ImageID: d.imageID, Source: d.src, AllowUnverified: d.in.AllowUnverified, BuildSignature: d.in.Signature}
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, checksumOptions), a.ResolveChecksum, req).Get(ctx, &d.src)
}

// transfer runs steps 3 to 6: node after node until one finishes the
// download or the error is not the node's. With transfer windows, each
// node waits for one to be open first.
func (d *download) transfer(ctx workflow.Context) (activities.Finished, error) {
	for {
		if err := d.waitForWindow(ctx); err != nil {
			return activities.Finished{}, err
		}
		node, err := d.pickNode(ctx)
		if err != nil {
			return activities.Finished{}, err
		}
		d.leaveBehind(ctx, node.NodeID)
		d.useNode(ctx, node.NodeID)
		fin, err := d.downloadOn(ctx, node)
		if err == nil {
			return fin, nil
		}
		reason, code, ok := failoverReason(ctx, err)
		if !ok {
			return activities.Finished{}, err
		}
		if err := d.failover(ctx, node.NodeID, reason, code); err != nil {
			return activities.Finished{}, err
		}
	}
}

// downloadOn runs the download on a node to its end. Paused at the end
// of a transfer window, it waits for the next one and starts the same job
// again on the same node, which resumes from its partial data.
func (d *download) downloadOn(ctx workflow.Context, node activities.Candidate) (activities.Finished, error) {
	job := d.job(node)
	for {
		var fin activities.Finished
		var paused bool
		err := d.startOn(ctx, job)
		if err == nil {
			if d.peer != nil {
				job.PeerImageID = d.peer.ImageID
			}
			fin, paused, err = d.watchOn(ctx, node, job)
		}
		if d.peerFailed(ctx, err) {
			if job, err = d.leavePeer(ctx, job, node, err); err != nil {
				return activities.Finished{}, err
			}
			continue
		}
		if err != nil || !paused {
			return fin, err
		}
		if err := d.waitForWindow(ctx); err != nil {
			return activities.Finished{}, err
		}
	}
}

func (d *download) startOn(ctx workflow.Context, job activities.Job) error {
	var started activities.Started
	d.jobStarted = true // a start that fails may still have reached the node
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, nodeStepOptions(ctx, startOptions)), a.StartOnNode, job).Get(ctx, &started)
	if err != nil {
		return err
	}
	d.peer = started.Peer
	d.setProgress(started.BytesDone, started.BytesTotal, 0)
	err = d.record(ctx, a.MarkDownloading, activities.DownloadingRequest{ImageID: d.imageID, NodeID: job.NodeID,
		Attempt: d.attempt, Path: started.Path, BytesDone: started.BytesDone, BytesTotal: d.progress.BytesTotal})
	if err != nil {
		return err
	}
	d.setStatus(ctx, imagestate.Downloading)
	return nil
}

func (d *download) job(node activities.Candidate) activities.Job {
	return activities.Job{ImageID: d.imageID, DownloadID: d.downloadID(), NodeID: node.NodeID, PoolID: d.plan.PoolID,
		FileName: d.plan.FileName, URL: d.src.URL, Checksum: d.src.Checksum, Format: d.src.Format, SizeBytes: d.src.SizeBytes,
		Shared: d.plan.Shared, Attempt: d.attempt, ImageFormat: d.plan.ImageFormat, NodeConverts: node.Converts,
		Mirrors: d.src.Mirrors, Credential: d.src.Credential, NodeFeatures: node.Features,
		MaxBytesPerSecond: d.in.MaxBytesPerSecond, Failed: d.failed, Peers: d.peers(), DeadPeers: d.deadPeers}
}

// markReady records the published file. It runs even when a cancel
// arrives now: the file exists and must be either the image's or gone,
// never half of each.
func (d *download) markReady(ctx workflow.Context, fin activities.Finished) (Result, error) {
	d.published = true
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	sum := fin.Checksum
	if sum == "" {
		sum = d.src.Checksum
	}
	fin.Checksum = sum
	req := activities.ReadyRequest{ImageID: d.imageID, Finished: fin, Failovers: d.failovers}
	var sourceNode string
	if d.peer != nil {
		// The agent verified the copy against the source's file checksum;
		// the image is of the same source as the one it copied.
		if d.src.Checksum != "" {
			req.Checksum, sum = d.src.Checksum, d.src.Checksum
		}
		req.Source, sourceNode = activities.SourcePeer, d.peer.NodeID
	}
	if err := d.record(ctx, a.MarkReady, req); err != nil {
		return Result{}, err
	}
	d.setProgress(fin.SizeBytes, fin.SizeBytes, 0)
	if fin.Mirrors != nil {
		d.progress.Mirrors = fin.Mirrors
	}
	d.setStatus(ctx, imagestate.Ready)
	return Result{ImageID: d.imageID, NodeID: fin.NodeID, Path: fin.Path, SizeBytes: fin.SizeBytes, Checksum: sum,
		FileChecksum: fin.FileChecksum, Format: fin.Format, Signature: d.src.Signature, SourceNodeID: sourceNode}, nil
}

// end finishes a download that did not succeed: cancelled, it cleans up
// on the node in a disconnected context (the workflow's own is cancelled)
// and ends cancelled; otherwise it records the failure and fails with the
// error's code.
func (d *download) end(ctx workflow.Context, err error) error {
	if ctx.Err() != nil || temporal.IsCanceledError(err) {
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		d.cleanup(dctx)
		// Marked even before EnsureImage ran: the API creates the record
		// before it starts the workflow, and a missing one is no error.
		err := d.record(dctx, a.MarkCancelled, activities.CancelledRequest{ImageID: d.imageID, Failovers: d.failovers})
		if err != nil {
			workflow.GetLogger(ctx).Error("mark cancelled", "image_id", d.imageID, "error", err)
		}
		d.setStatus(dctx, imagestate.Cancelled)
		return temporal.NewCanceledError("download cancelled")
	}
	code, msg := failure(err)
	d.cleanup(ctx)
	req := activities.FailRequest{ImageID: d.imageID, Code: code, Message: msg, Failovers: d.failovers}
	if err := d.record(ctx, a.MarkFailed, req); err != nil {
		workflow.GetLogger(ctx).Error("mark failed", "image_id", d.imageID, "error", err)
	}
	d.setStatus(ctx, imagestate.Failed)
	return temporal.NewNonRetryableApplicationError(msg, code, nil)
}

// cleanup asks the current node, best effort, to stop its job and remove
// the partial data — or, when the file was published but the image could
// not be marked READY, the file. The local pool's nodes left behind while
// unreachable are asked to remove theirs too.
func (d *download) cleanup(ctx workflow.Context) {
	for _, nodeID := range d.leftBehind {
		req := activities.CancelRequest{NodeID: nodeID, DownloadID: d.downloadID()}
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.CancelOnNode, req).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("clean up on the node left behind", "image_id", d.imageID, "node_id", nodeID, "error", err)
		}
	}
	d.leftBehind = nil
	if !d.jobStarted || d.nodeID == "" {
		return
	}
	if d.published {
		req := activities.FileRequest{NodeID: d.nodeID, PoolID: d.plan.PoolID, FileName: d.plan.FileName}
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.RemoveFile, req).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("remove published file", "image_id", d.imageID, "node_id", d.nodeID, "error", err)
		}
		return
	}
	req := activities.CancelRequest{NodeID: d.nodeID, DownloadID: d.downloadID()}
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.CancelOnNode, req).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("clean up on node", "image_id", d.imageID, "node_id", d.nodeID, "error", err)
	}
}

// failure is the contract code and message of a failed step.
func failure(err error) (code, msg string) {
	if fe, ok := fault.As(err); ok {
		return fe.Code, fe.Message
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		if fault.Known(appErr.Type()) {
			return appErr.Type(), appErr.Message()
		}
		return fault.Internal, appErr.Message() // a plain error whose retries ran out
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return fault.Internal, "a step timed out: " + te.Error()
	}
	return fault.Internal, err.Error()
}

// failoverReason says whether an error of a node step is the node's, so
// the download moves on to the next node, why, and the contract code of
// the node's error.
func failoverReason(ctx workflow.Context, err error) (reason, code string, ok bool) {
	if ctx.Err() != nil || temporal.IsCanceledError(err) {
		return "", "", false
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch {
		case appErr.Type() == activities.FailoverError:
			if appErr.HasDetails() {
				_ = appErr.Details(&code) // older histories carry no code
			}
			return appErr.Message(), code, true
		case !appErr.NonRetryable(): // retries ran out
			return appErr.Message(), appErr.Type(), true
		}
		return "", "", false
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return "the node's step timed out: " + te.Error(), fault.NodeUnreachable, true
	}
	return err.Error(), "", true
}
