package api

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// removeFile has the worker remove a READY image — its file, then its
// record — and waits, up to RemoveTimeout, for the outcome, so DELETE
// still answers 204 once the image is gone, or the reason it is kept. The
// workflow id comes from the image and a second DELETE while one runs
// joins it. force deletes the record even when no node can remove the
// file.
func (s *Server) removeFile(ctx context.Context, img store.Image, force bool) error {
	sctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	run, err := s.temporal.ExecuteWorkflow(sctx, client.StartWorkflowOptions{
		ID:                       contract.RemoveFileWorkflowID(img.ID),
		TaskQueue:                contract.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("remove %s of image %s from pool %s", img.FileName, img.ID, img.PoolID),
	}, contract.RemoveFileWorkflowType, contract.RemoveFileInput{ImageID: img.ID, Force: force})
	cancel()
	if err != nil {
		return s.temporalError("start the workflow that removes the image's file", err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.opts.RemoveTimeout)
	defer cancel()
	var res contract.RemoveFileResult
	err = run.Get(wctx, &res)
	var ae *temporal.ApplicationError
	switch {
	case err == nil:
	case errors.As(err, &ae) && fault.Known(ae.Type()):
		return &fault.Error{Code: ae.Type(), Message: ae.Message(), Retryable: ae.Type() == fault.NodeUnreachable}
	case ctx.Err() == nil && waitEnded(wctx, err):
		return &fault.Error{Code: fault.NodeUnreachable, Retryable: true, Message: fmt.Sprintf(
			"the file of image %q was not removed within %s: is a worker running (cloudimages worker)? Its removal goes on in workflow %s; DELETE again later to see the outcome",
			img.ID, s.opts.RemoveTimeout, run.GetID())}
	default:
		return s.temporalError("remove the image's file", err)
	}
	if res.LeftBehind != "" {
		s.log.Warn("image record deleted, its file left behind (force)", "image_id", img.ID, "pool_id", img.PoolID,
			"node_id", img.NodeID, "path", img.Path, "reason", res.LeftBehind)
	}
	return nil
}

// waitEnded reports whether err ended a wait because its deadline passed.
// The server may answer DEADLINE_EXCEEDED a moment before the client's own
// context says so: either one means the wait ran out, not that Temporal is
// down.
func waitEnded(wctx context.Context, err error) bool {
	var de *serviceerror.DeadlineExceeded
	return wctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &de)
}
