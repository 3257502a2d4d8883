package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/workflows"
)

func TestCancelStopsTheNodeJobAndEndsCancelled(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.Job) (activities.Finished, error) {
			f.env.CancelWorkflow()
			<-ctx.Done()
			return activities.Finished{}, ctx.Err()
		}).Once()
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).Return(nil).Once()
	f.env.OnActivity(a.MarkCancelled, mock.Anything, cancelledReq).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if err := f.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	if s := f.state(); s.Status != "CANCELLED" {
		t.Fatalf("status = %s, want CANCELLED", s.Status)
	}
	f.env.AssertActivityNumberOfCalls(t, "MarkFailed", 0)
	f.env.AssertExpectations(t)
}

var cancelledReq = activities.CancelledRequest{ImageID: imageID, Failovers: []workflows.Failover{}}

func TestCancelWhileWaitingForANodeMarksCancelled(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(activities.Pick{Assigned: []string{"node-1"},
		Refused: []activities.Refusal{{NodeID: "node-1", Reason: "health check failed"}}}, nil)
	f.env.OnActivity(a.MarkCancelled, mock.Anything, cancelledReq).Return(nil).Once()
	f.env.RegisterDelayedCallback(f.env.CancelWorkflow, 5*time.Second)

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if err := f.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	// No node job was started: there is nothing to clean up on a node.
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0)
	f.env.AssertExpectations(t)
}

func TestWatchRetriedAfterWorkerDiedReattachesWithoutRestartingTheTransfer(t *testing.T) {
	f := newFixture(t, true)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	// The first attempt's worker dies: its heartbeats stop.
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).
		Return(activities.Finished{}, temporal.NewHeartbeatTimeoutError(activities.WatchDetails{NodeID: "node-1", DownloadID: imageID, BytesDone: 500})).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-1" {
		t.Fatalf("result on %s, want node-1 (no failover)", r.NodeID)
	}
	if s := f.state(); len(s.Failovers) != 0 || s.Progress.Attempt != 1 {
		t.Fatalf("progress state = %+v, want no failover", s)
	}
	f.env.AssertActivityNumberOfCalls(t, "StartOnNode", 1)
	f.env.AssertActivityNumberOfCalls(t, "WatchDownload", 2)
	f.env.AssertExpectations(t)
}

func TestProgressQueryShowsSignalledProgressAndFailovers(t *testing.T) {
	f := newFixture(t, true)
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(activities.Pick{Assigned: []string{"node-1"}}, nil)
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.Job) (activities.Finished, error) {
			// News from another node is ignored; this node's is taken.
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-9", State: "running", BytesDone: 900, BytesTotal: 1000})
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: "running", BytesDone: 250, BytesTotal: 1000, BytesPerSecond: 50})
			return activities.Finished{}, temporal.NewNonRetryableApplicationError("node node-1 unreachable for 30s", activities.FailoverError, nil)
		}).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	code, _ := f.failedWith()
	if code != fault.NoNodeAvailable {
		t.Fatalf("failed with %s", code)
	}
	s := f.state()
	p := s.Progress
	if s.Status != "FAILED" || s.NodeID != "node-1" || p.BytesDone != 250 || p.BytesTotal != 1000 || p.Percent != 25 ||
		p.BytesPerSecond != 50 || p.Attempt != 1 || p.NodeID != "node-1" {
		t.Fatalf("progress state = %+v", s)
	}
	if len(s.Failovers) != 1 || s.Failovers[0].NodeID != "node-1" || !strings.Contains(s.Failovers[0].Reason, "unreachable") {
		t.Fatalf("failovers = %+v", s.Failovers)
	}
}

func TestStartedFromTheCLIWithOnlyCatalogAndPool(t *testing.T) {
	f := newFixture(t, false)
	f.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "image-cli-demo"})
	f.env.OnActivity(a.ResolveSource, mock.Anything, source.Request{CatalogID: "cirros", PoolID: poolID}).Return(cirros, nil).Once()
	f.env.OnActivity(a.EnsureImage, mock.Anything, activities.ImageRequest{ImageID: "cli-demo", WorkflowID: "image-cli-demo", PoolID: poolID, Source: cirros}).
		Return(activities.Plan{ImageID: "cli-demo", PoolID: poolID, FileName: cirros.FileName, AssignedNodes: []string{"node-1"},
			NoNodeTimeout: time.Minute, HeartbeatTimeout: 20 * time.Second}, nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.ImageID == "cli-demo" && j.DownloadID == "cli-demo"
	})).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(finished("node-1"), nil).Once()

	f.run(workflows.Input{CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.ImageID != "cli-demo" || r.NodeID != "node-1" || r.Checksum != sum {
		t.Fatalf("result = %+v", r)
	}
	f.env.AssertExpectations(t)
}

func TestSourceErrorsFailWithTheirCode(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.ResolveChecksum, mock.Anything, mock.Anything).
		Return(source.Source{}, temporal.NewNonRetryableApplicationError("checksum file does not list cirros.img", fault.ChecksumUnavailable, nil)).Once()
	f.env.OnActivity(a.MarkFailed, mock.Anything, activities.FailRequest{ImageID: imageID, Code: fault.ChecksumUnavailable,
		Message: "checksum file does not list cirros.img", Failovers: []workflows.Failover{}}).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if code, _ := f.failedWith(); code != fault.ChecksumUnavailable {
		t.Fatalf("failed with %s", code)
	}
	f.env.AssertActivityNumberOfCalls(t, "PickNode", 0)
	f.env.AssertExpectations(t)
}

func TestPublishedFileIsRemovedWhenTheImageCannotBecomeReady(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(finished("node-1"), nil).Once()
	// The image was cancelled through the API while the node verified it.
	f.env.OnActivity(a.MarkReady, mock.Anything, mock.Anything).
		Return(temporal.NewNonRetryableApplicationError(`image "img-1" is CANCELLED and cannot become READY`, fault.Conflict, nil)).Once()
	f.env.OnActivity(a.RemoveFile, mock.Anything, activities.FileRequest{NodeID: "node-1", PoolID: poolID, FileName: "cirros.img"}).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if code, _ := f.failedWith(); code != fault.Conflict {
		t.Fatalf("failed with %s", code)
	}
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0)
	f.env.AssertExpectations(t)
}

// The API creates the image record before it starts the workflow: a cancel
// that arrives before the workflow's own EnsureImage still marks it.
func TestCancelBeforeTheRecordStepMarksTheAPIsRecordCancelled(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.ResolveSource, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ source.Request) (source.Source, error) {
			f.env.CancelWorkflow()
			<-ctx.Done()
			return source.Source{}, ctx.Err()
		}).Once()
	f.env.OnActivity(a.MarkCancelled, mock.Anything, cancelledReq).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if err := f.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	f.env.AssertActivityNumberOfCalls(t, "EnsureImage", 0)
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0)
	f.env.AssertExpectations(t)
}
