package workflows

import (
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
)

// waitOptions: waiting for a download of the build that an earlier check
// started; the heartbeat notices a dead worker.
var waitOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 7 * 24 * time.Hour,
	HeartbeatTimeout:    30 * time.Second,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 20},
}

// linkOptions: publishing -latest through a node agent.
var linkOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
}

// RefreshImageWorkflow is one check of a subscription, run by its
// Temporal Schedule every `every` (or now, by POST …/check):
//  1. find the build the vendor's checksum file names (a conditional
//     fetch: an unchanged file costs a 304),
//  2. make sure each pool has an image of that build, starting a child
//     DownloadImageWorkflow for each new one, and wait for them,
//  3. in each pool where the build is READY, point
//     "{catalog_id}-latest.{format}" at it,
//  4. remove the versions past `keep` (never pinned ones, never the one
//     -latest names) with RemoveImageFileWorkflow,
//  5. record the outcome on the subscription.
//
// An unchanged build goes through the same steps, which then find
// everything in place: a check that failed half way is finished by the
// next one.
func RefreshImageWorkflow(ctx workflow.Context, in RefreshInput) (RefreshResult, error) {
	r := &refresh{res: RefreshResult{SubscriptionID: in.SubscriptionID}}
	ctx = workflow.WithLocalActivityOptions(ctx, localOptions)
	if err := workflow.UpsertTypedSearchAttributes(ctx, SubscriptionIDKey.ValueSet(in.SubscriptionID)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "subscription_id", in.SubscriptionID, "error", err)
	}
	var b activities.Build
	err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, checksumOptions), a.CheckBuild, in.SubscriptionID).Get(ctx, &b)
	if err != nil {
		r.fail(err, "check the vendor's checksum file")
		r.record(ctx, b)
		return r.res, temporal.NewNonRetryableApplicationError(r.res.Errors[0], r.code, nil)
	}
	if b.Skipped != "" {
		r.res.Skipped = b.Skipped
		return r.res, nil
	}
	r.res.Version, r.res.Checksum, r.res.NotModified = b.Version, b.Checksum, b.NotModified
	r.build = b
	r.run(ctx)
	r.record(ctx, b)
	if len(r.res.Errors) > 0 {
		return r.res, temporal.NewNonRetryableApplicationError(strings.Join(r.res.Errors, "; "), r.code, nil)
	}
	return r.res, nil
}

// refresh is the state of one check.
type refresh struct {
	build    activities.Build
	res      RefreshResult
	complete bool   // every pool has the build READY and -latest names it
	code     string // the contract code of the first failure
}

// fail records a step's failure (err, described by what) and goes on
// with the other pools.
func (r *refresh) fail(err error, format string, args ...any) {
	code, msg := failure(err)
	if r.code == "" {
		r.code = code
	}
	r.res.Errors = append(r.res.Errors, fmt.Sprintf(format, args...)+": "+msg)
}

func (r *refresh) run(ctx workflow.Context) {
	var images []activities.PoolImage
	if err := workflow.ExecuteLocalActivity(ctx, a.EnsureBuildImages, r.build).Get(ctx, &images); err != nil {
		r.fail(err, "create the images of build %s", r.build.Version)
		return
	}
	ready := r.download(ctx, images)
	r.complete = len(ready) == len(r.build.PoolIDs)
	for _, img := range ready {
		if !r.publishLatest(ctx, img) {
			r.complete = false
			continue
		}
		r.applyRetention(ctx, img.PoolID)
	}
}

// download starts a child download for each new image, waits for those
// and for the ones an earlier check started, and returns the pools'
// images that are READY. A live image from an earlier check gets its
// child started again too: when its workflow still runs, the start is
// refused and the check waits on the image instead; when the workflow
// is gone (terminated), the new run heals the image.
func (r *refresh) download(ctx workflow.Context, images []activities.PoolImage) []activities.PoolImage {
	type pending struct {
		img activities.PoolImage
		f   workflow.Future
	}
	var waits []pending
	var ready []activities.PoolImage
	for _, img := range images {
		switch {
		case img.Error != "":
			r.fail(temporal.NewNonRetryableApplicationError(img.Error, fault.PoolNotFound, nil), "pool %s", img.PoolID)
		case img.Status == imagestate.Ready:
			ready = append(ready, img)
		default:
			if img.Created {
				r.res.Downloaded = append(r.res.Downloaded, img.ImageID)
			}
			waits = append(waits, pending{img, r.startDownload(ctx, img)})
		}
	}
	for _, w := range waits {
		err := w.f.Get(ctx, nil)
		if err != nil && !w.img.Created && temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			err = r.waitFor(ctx, w.img)
		}
		if err != nil {
			r.fail(err, "pool %s: build %s (image %s) did not become READY", w.img.PoolID, r.build.Version, w.img.ImageID)
			continue
		}
		ready = append(ready, w.img)
	}
	return ready
}

// waitFor waits for the image of a download an earlier check started and
// whose workflow still runs.
func (r *refresh) waitFor(ctx workflow.Context, img activities.PoolImage) error {
	var status string
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, waitOptions), a.WaitForImage, img.ImageID).Get(ctx, &status); err != nil {
		return err
	}
	if status != imagestate.Ready {
		return temporal.NewNonRetryableApplicationError("the download ended "+status, fault.Internal, nil)
	}
	return nil
}

// startDownload starts the child DownloadImageWorkflow of a new image,
// under the image's own workflow id, with the subscription's search
// attribute. It is abandoned, not cancelled, should the check end first:
// the download goes on.
func (r *refresh) startDownload(ctx workflow.Context, img activities.PoolImage) workflow.Future {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        WorkflowID(img.ImageID),
		TaskQueue:         TaskQueue,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		TypedSearchAttributes: temporal.NewSearchAttributes(SubscriptionIDKey.ValueSet(r.build.SubscriptionID),
			ImageIDKey.ValueSet(img.ImageID), PoolIDKey.ValueSet(img.PoolID), CatalogIDKey.ValueSet(r.build.CatalogID),
			ImageStatusKey.ValueSet(imagestate.Pending)),
		StaticSummary: fmt.Sprintf("build %s of %s into pool %s (subscription %s)", r.build.Version, r.build.CatalogID, img.PoolID, r.build.SubscriptionID),
	})
	return workflow.ExecuteChildWorkflow(cctx, WorkflowType, Input{ImageID: img.ImageID, CatalogID: r.build.CatalogID,
		Checksum: r.build.Checksum, Version: r.build.Version, Signature: r.build.Signature, PoolID: img.PoolID})
}

func (r *refresh) publishLatest(ctx workflow.Context, img activities.PoolImage) bool {
	req := activities.LatestRequest{SubscriptionID: r.build.SubscriptionID, ImageID: img.ImageID}
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, linkOptions), a.PublishLatest, req).Get(ctx, nil)
	if err != nil {
		r.fail(err, "pool %s: publish -latest for build %s", img.PoolID, r.build.Version)
		return false
	}
	r.res.Linked = append(r.res.Linked, img.ImageID)
	return true
}

// applyRetention removes the pool's versions past keep, one at a time,
// each through RemoveImageFileWorkflow (file, then record), and records
// each removal.
func (r *refresh) applyRetention(ctx workflow.Context, poolID string) {
	var removals []activities.Removal
	req := activities.RetentionRequest{SubscriptionID: r.build.SubscriptionID, PoolID: poolID, CatalogID: r.build.CatalogID, Keep: r.build.Keep}
	if err := workflow.ExecuteLocalActivity(ctx, a.PlanRetention, req).Get(ctx, &removals); err != nil {
		r.fail(err, "pool %s: plan retention", poolID)
		return
	}
	for _, rm := range removals {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: RemoveFileWorkflowID(rm.ImageID),
			TaskQueue:  TaskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(SubscriptionIDKey.ValueSet(r.build.SubscriptionID),
				ImageIDKey.ValueSet(rm.ImageID), PoolIDKey.ValueSet(poolID)),
			StaticSummary: fmt.Sprintf("retention of subscription %s: remove build %s (%s) from pool %s", r.build.SubscriptionID, rm.Version, rm.FileName, poolID),
		})
		err := workflow.ExecuteChildWorkflow(cctx, RemoveFileWorkflowType, RemoveFileInput{ImageID: rm.ImageID}).Get(ctx, nil)
		if err != nil {
			r.fail(err, "pool %s: remove build %s (image %s)", poolID, rm.Version, rm.ImageID)
			continue
		}
		r.res.Removed = append(r.res.Removed, rm.ImageID)
		ev := activities.EventRequest{SubscriptionID: r.build.SubscriptionID, Kind: activities.EventRemoved, PoolID: poolID, ImageID: rm.ImageID,
			Version: rm.Version, Message: fmt.Sprintf("removed %s: past keep %d", rm.FileName, r.build.Keep)}
		if err := workflow.ExecuteLocalActivity(ctx, a.RecordEvent, ev).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("record removal", "image_id", rm.ImageID, "error", err)
		}
	}
}

// record writes the check's outcome to the subscription.
func (r *refresh) record(ctx workflow.Context, b activities.Build) {
	out := activities.OutcomeRequest{SubscriptionID: r.res.SubscriptionID, Error: strings.Join(r.res.Errors, "; ")}
	if r.complete {
		out.Version, out.Checksum = b.Version, b.Checksum
	}
	if err := workflow.ExecuteLocalActivity(ctx, a.RecordOutcome, out).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("record the check's outcome", "subscription_id", r.res.SubscriptionID, "error", err)
	}
}
