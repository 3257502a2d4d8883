package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/workflows"
)

func newUploadFixture(t *testing.T) *fixture {
	f := newFixture(t, false)
	f.env.RegisterWorkflowWithOptions(workflows.UploadImageWorkflow, workflow.RegisterOptions{Name: workflows.UploadWorkflowType})
	return f
}

var uploadIn = workflows.UploadInput{ImageID: imageID, PoolID: poolID, Name: "disk.qcow2", FileName: "cirros.img",
	Checksum: sum, SizeBytes: 1000, TTL: time.Hour}

func (f *fixture) runUpload(in workflows.UploadInput) {
	f.defaults()
	f.env.ExecuteWorkflow(workflows.UploadWorkflowType, in)
	if !f.env.IsWorkflowCompleted() {
		f.t.Fatal("workflow did not complete")
	}
}

func TestUploadPicksAnUploadingNodeAndMarksReady(t *testing.T) {
	f := newUploadFixture(t)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.MatchedBy(func(r activities.PickRequest) bool { return r.Upload && r.PoolID == poolID })).
		Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartUploadOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-1" && j.DownloadID == imageID && j.SizeBytes == 1000 && j.Checksum == sum
	})).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()
	f.runUpload(uploadIn)
	if r := f.result(); r.NodeID != "node-1" || r.Checksum != sum {
		t.Errorf("result %+v", r)
	}
	if got := f.recordsSoFar(); got != "DOWNLOADING node-1 attempt 1 at 0 of 1000; READY node-1" {
		t.Errorf("records: %s", got)
	}
}

// TestUploadWaitsForItsUnreachableNode: a node that the watch gives up on
// is watched again (the bytes are there), rather than failed over.
func TestUploadWaitsForItsUnreachableNode(t *testing.T) {
	f := newUploadFixture(t)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartUploadOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	unreachable := temporal.NewNonRetryableApplicationError("node node-1 unreachable for 30s", activities.FailoverError, nil, fault.NodeUnreachable)
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(activities.Finished{}, unreachable).Twice()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()
	f.runUpload(uploadIn)
	f.result()
	if got := f.recordsSoFar(); strings.Contains(got, "FAILOVERS") || !strings.HasSuffix(got, "READY node-1") {
		t.Errorf("records: %s; want READY on node-1 without a failover", got)
	}
}

// TestIdleUploadExpires: an upload that receives nothing for its TTL
// fails upload_expired, and its partial data is cancelled on the node.
func TestIdleUploadExpires(t *testing.T) {
	f := newUploadFixture(t)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartUploadOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	// Nobody sends to the upload: the watch would run for hours.
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).After(5 * time.Hour).Once()
	cancelled := false
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).Return(func(context.Context, activities.CancelRequest) error {
		cancelled = true
		return nil
	}).Once()
	f.runUpload(workflows.UploadInput{ImageID: imageID, PoolID: poolID, FileName: "cirros.img", SizeBytes: 1000, TTL: 10 * time.Minute})
	if code, _ := f.failedWith(); code != fault.UploadExpired {
		t.Fatalf("code %s, want upload_expired", code)
	}
	if !cancelled {
		t.Error("the expired upload's partial data was not cancelled on the node")
	}
	if got := f.recordsSoFar(); !strings.HasSuffix(got, "FAILED upload_expired") {
		t.Errorf("records: %s", got)
	}
}

// TestProgressKeepsAnUploadAlive: progress signalled by the watch moves
// the expiry on, so a slow upload longer than its TTL is not expired.
func TestProgressKeepsAnUploadAlive(t *testing.T) {
	f := newUploadFixture(t)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartUploadOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	// The watch ends after 45 minutes of test time, past four TTLs.
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).After(45 * time.Minute).Once()
	for i := 1; i <= 5; i++ { // 5 × 8 min of an upload with a 10 min TTL
		n := int64(i * 100)
		f.env.RegisterDelayedCallback(func() {
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: "running", BytesDone: n, BytesTotal: 1000})
		}, time.Duration(i)*8*time.Minute)
	}
	f.runUpload(workflows.UploadInput{ImageID: imageID, PoolID: poolID, FileName: "cirros.img", SizeBytes: 1000, TTL: 10 * time.Minute})
	f.result()
}
