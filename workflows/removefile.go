package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
)

// removeFileOptions: each attempt asks the image's nodes one after the
// other, each for a few seconds; a second attempt gets past a blip.
var removeFileOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
}

// RemoveImageFileWorkflow removes a READY image: its file from the pool,
// through a node agent that serves the pool, then its record. When no
// node can remove the file, the image is kept and the workflow fails with
// node_unreachable, unless the input forces the record's deletion.
func RemoveImageFileWorkflow(ctx workflow.Context, in RemoveFileInput) (RemoveFileResult, error) {
	res := RemoveFileResult{ImageID: in.ImageID}
	var removed activities.ImageFileRemoved
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, removeFileOptions), a.RemoveImageFile,
		activities.ImageFileRequest{ImageID: in.ImageID}).Get(ctx, &removed)
	switch {
	case err != nil && !in.Force:
		return res, removalError(err)
	case err != nil:
		res.LeftBehind = removalError(err).Error()
		workflow.GetLogger(ctx).Warn("file left behind (force)", "image_id", in.ImageID, "error", err)
	case removed.Gone:
		return res, nil
	default:
		res.FileRemoved, res.NodeID = true, removed.NodeID
	}
	err = workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, localOptions), a.DeleteImageRecord, in.ImageID).Get(ctx, nil)
	return res, err
}

// removalError is the activity's failure as the workflow's own, with the
// contract code as its type, so the API answers with that code and
// message.
func removalError(err error) error {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return temporal.NewNonRetryableApplicationError(ae.Message(), ae.Type(), nil)
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), fault.Internal, nil)
}
