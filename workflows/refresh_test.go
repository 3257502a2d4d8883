package workflows_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/workflows"
)

const subID = "sub-1"

func newRefreshEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	env := newTestEnv()
	env.RegisterWorkflowWithOptions(workflows.RefreshImageWorkflow, workflow.RegisterOptions{Name: workflows.RefreshWorkflowType})
	env.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	env.RegisterWorkflowWithOptions(workflows.RemoveImageFileWorkflow, workflow.RegisterOptions{Name: workflows.RemoveFileWorkflowType})
	env.RegisterActivity(a)
	return env
}

var build2 = activities.Build{SubscriptionID: subID, CatalogID: "tiny", PoolIDs: []string{"p1", "p2"}, Keep: 2,
	Checksum: "sha256:22", Version: "41-1.2"}

func refreshResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) (workflows.RefreshResult, error) {
	t.Helper()
	env.ExecuteWorkflow(workflows.RefreshWorkflowType, workflows.RefreshInput{SubscriptionID: subID})
	var res workflows.RefreshResult
	err := env.GetWorkflowError()
	if err == nil {
		if gerr := env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, err
}

// TestRefreshDownloadsANewBuildIntoEachPoolThenMovesLatestAndRemovesOld:
// a child download per pool with the build's version and checksum, -latest
// once READY, retention through RemoveImageFileWorkflow, the outcome
// recorded with the version.
func TestRefreshDownloadsANewBuildIntoEachPoolThenMovesLatestAndRemovesOld(t *testing.T) {
	env := newRefreshEnv(t)
	env.OnActivity(a.CheckBuild, mock.Anything, subID).Return(build2, nil).Once()
	env.OnActivity(a.EnsureBuildImages, mock.Anything, build2).Return([]activities.PoolImage{
		{PoolID: "p1", ImageID: "i1", Status: imagestate.Pending, Created: true},
		{PoolID: "p2", ImageID: "i2", Status: imagestate.Pending, Created: true},
	}, nil).Once()
	for _, c := range []struct{ pool, img string }{{"p1", "i1"}, {"p2", "i2"}} {
		env.OnWorkflow(workflows.WorkflowType, mock.Anything, workflows.Input{ImageID: c.img, CatalogID: "tiny", Checksum: "sha256:22",
			Version: "41-1.2", PoolID: c.pool}).Return(workflows.Result{ImageID: c.img}, nil).Once()
		env.OnActivity(a.PublishLatest, mock.Anything, activities.LatestRequest{SubscriptionID: subID, ImageID: c.img}).Return("tiny-latest.qcow2", nil).Once()
	}
	env.OnActivity(a.PlanRetention, mock.Anything, activities.RetentionRequest{SubscriptionID: subID, PoolID: "p1", CatalogID: "tiny", Keep: 2}).
		Return([]activities.Removal{{ImageID: "old1", Version: "41-1.0", FileName: "tiny-41-1.0.qcow2"}}, nil).Once()
	env.OnActivity(a.PlanRetention, mock.Anything, activities.RetentionRequest{SubscriptionID: subID, PoolID: "p2", CatalogID: "tiny", Keep: 2}).
		Return([]activities.Removal(nil), nil).Once()
	env.OnWorkflow(workflows.RemoveFileWorkflowType, mock.Anything, workflows.RemoveFileInput{ImageID: "old1"}).
		Return(workflows.RemoveFileResult{ImageID: "old1", FileRemoved: true}, nil).Once()
	env.OnActivity(a.RecordEvent, mock.Anything, mock.MatchedBy(func(e activities.EventRequest) bool {
		return e.Kind == "removed" && e.ImageID == "old1" && e.PoolID == "p1"
	})).Return(nil).Once()
	env.OnActivity(a.RecordOutcome, mock.Anything, activities.OutcomeRequest{SubscriptionID: subID, Version: "41-1.2", Checksum: "sha256:22"}).Return(nil).Once()

	res, err := refreshResult(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Downloaded) != 2 || len(res.Linked) != 2 || len(res.Removed) != 1 || res.Version != "41-1.2" {
		t.Errorf("result = %+v", res)
	}
	env.AssertExpectations(t)
}

// TestRefreshOfAPoolWhoseDownloadFailsLeavesItsLatestAlone: the other pool
// moves on; the outcome names the failure and no current version.
func TestRefreshOfAPoolWhoseDownloadFailsLeavesItsLatestAlone(t *testing.T) {
	env := newRefreshEnv(t)
	env.OnActivity(a.CheckBuild, mock.Anything, subID).Return(build2, nil)
	env.OnActivity(a.EnsureBuildImages, mock.Anything, build2).Return([]activities.PoolImage{
		{PoolID: "p1", ImageID: "i1", Status: imagestate.Pending, Created: true},
		{PoolID: "p2", ImageID: "i2", Status: imagestate.Pending, Created: true},
	}, nil)
	env.OnWorkflow(workflows.WorkflowType, mock.Anything, mock.MatchedBy(func(in workflows.Input) bool { return in.PoolID == "p1" })).
		Return(workflows.Result{}, temporal.NewNonRetryableApplicationError("checksum of the bytes differs", fault.ChecksumMismatch, nil))
	env.OnWorkflow(workflows.WorkflowType, mock.Anything, mock.MatchedBy(func(in workflows.Input) bool { return in.PoolID == "p2" })).
		Return(workflows.Result{ImageID: "i2"}, nil)
	env.OnActivity(a.PublishLatest, mock.Anything, activities.LatestRequest{SubscriptionID: subID, ImageID: "i2"}).Return("tiny-latest.qcow2", nil).Once()
	env.OnActivity(a.PlanRetention, mock.Anything, mock.Anything).Return([]activities.Removal(nil), nil).Once()
	var outcome activities.OutcomeRequest
	env.OnActivity(a.RecordOutcome, mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		outcome = args.Get(1).(activities.OutcomeRequest)
	}).Return(nil).Once()

	_, err := refreshResult(t, env)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != fault.ChecksumMismatch {
		t.Fatalf("error = %v, want the failed download's checksum_mismatch", err)
	}
	if outcome.Version != "" || !strings.Contains(outcome.Error, "pool p1") || !strings.Contains(outcome.Error, "checksum of the bytes differs") {
		t.Errorf("outcome = %+v, want no version and pool p1's error", outcome)
	}
	env.AssertExpectations(t)
}

// TestRefreshWaitsForADownloadAnEarlierCheckStarted rather than starting
// a second one (its workflow still runs: the child's start is refused);
// a READY image is only linked.
func TestRefreshWaitsForADownloadAnEarlierCheckStarted(t *testing.T) {
	env := newRefreshEnv(t)
	env.OnActivity(a.CheckBuild, mock.Anything, subID).Return(build2, nil)
	env.OnActivity(a.EnsureBuildImages, mock.Anything, build2).Return([]activities.PoolImage{
		{PoolID: "p1", ImageID: "i1", Status: imagestate.Downloading},
		{PoolID: "p2", ImageID: "i2", Status: imagestate.Ready},
	}, nil)
	env.OnWorkflow(workflows.WorkflowType, mock.Anything, mock.MatchedBy(func(in workflows.Input) bool { return in.ImageID == "i1" })).
		Return(workflows.Result{}, &temporal.ChildWorkflowExecutionAlreadyStartedError{}).Once()
	env.OnActivity(a.WaitForImage, mock.Anything, "i1").Return(imagestate.Ready, nil).Once()
	env.OnActivity(a.PublishLatest, mock.Anything, mock.Anything).Return("tiny-latest.qcow2", nil).Twice()
	env.OnActivity(a.PlanRetention, mock.Anything, mock.Anything).Return([]activities.Removal(nil), nil).Twice()
	env.OnActivity(a.RecordOutcome, mock.Anything, activities.OutcomeRequest{SubscriptionID: subID, Version: "41-1.2", Checksum: "sha256:22"}).Return(nil).Once()

	res, err := refreshResult(t, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Downloaded) != 0 || len(res.Linked) != 2 {
		t.Errorf("result = %+v, want no download started and both pools linked", res)
	}
	env.AssertExpectations(t)
}

// TestRefreshRestartsTheDownloadOfALiveImageWhoseWorkflowIsGone: the
// image's workflow was terminated, so its child starts again and heals it.
func TestRefreshRestartsTheDownloadOfALiveImageWhoseWorkflowIsGone(t *testing.T) {
	env := newRefreshEnv(t)
	one := build2
	one.PoolIDs = []string{"p1"}
	env.OnActivity(a.CheckBuild, mock.Anything, subID).Return(one, nil)
	env.OnActivity(a.EnsureBuildImages, mock.Anything, one).Return([]activities.PoolImage{{PoolID: "p1", ImageID: "i1", Status: imagestate.Pending}}, nil)
	env.OnWorkflow(workflows.WorkflowType, mock.Anything, workflows.Input{ImageID: "i1", CatalogID: "tiny", Checksum: "sha256:22", Version: "41-1.2", PoolID: "p1"}).
		Return(workflows.Result{ImageID: "i1"}, nil).Once()
	env.OnActivity(a.PublishLatest, mock.Anything, mock.Anything).Return("tiny-latest.qcow2", nil).Once()
	env.OnActivity(a.PlanRetention, mock.Anything, mock.Anything).Return([]activities.Removal(nil), nil).Once()
	env.OnActivity(a.RecordOutcome, mock.Anything, mock.Anything).Return(nil).Once()
	if _, err := refreshResult(t, env); err != nil {
		t.Fatal(err)
	}
	env.AssertExpectations(t)
	env.AssertActivityNumberOfCalls(t, "WaitForImage", 0)
}

// TestRefreshOfAPausedOrDeletedSubscriptionDoesNothing.
func TestRefreshOfAPausedOrDeletedSubscriptionDoesNothing(t *testing.T) {
	for _, skipped := range []string{"paused", "deleted"} {
		t.Run(skipped, func(t *testing.T) {
			env := newRefreshEnv(t)
			env.OnActivity(a.CheckBuild, mock.Anything, subID).Return(activities.Build{SubscriptionID: subID, Skipped: skipped}, nil)
			res, err := refreshResult(t, env)
			if err != nil || res.Skipped != skipped {
				t.Fatalf("result = %+v, %v", res, err)
			}
			env.AssertActivityNumberOfCalls(t, "EnsureBuildImages", 0)
			env.AssertActivityNumberOfCalls(t, "RecordOutcome", 0)
		})
	}
}

// TestRefreshRecordsAChecksumFileThatCannotBeFetched as the
// subscription's last error, with the step's code.
func TestRefreshRecordsAChecksumFileThatCannotBeFetched(t *testing.T) {
	env := newRefreshEnv(t)
	env.OnActivity(a.CheckBuild, mock.Anything, subID).
		Return(activities.Build{}, temporal.NewNonRetryableApplicationError("checksum file x: the server answered 404", fault.ChecksumUnavailable, nil))
	var outcome activities.OutcomeRequest
	env.OnActivity(a.RecordOutcome, mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		outcome = args.Get(1).(activities.OutcomeRequest)
	}).Return(nil).Once()
	_, err := refreshResult(t, env)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != fault.ChecksumUnavailable {
		t.Fatalf("error = %v, want checksum_unavailable", err)
	}
	if !strings.Contains(outcome.Error, "404") || outcome.Version != "" {
		t.Errorf("outcome = %+v", outcome)
	}
}
