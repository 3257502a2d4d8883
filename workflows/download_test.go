package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/workflows"
)

// a names the activities in mocks, as the workflow does.
var a *activities.Activities

const (
	imageID = "img-1"
	poolID  = "pool-1"
	sum     = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

var cirros = source.Source{CatalogID: "cirros", URL: "https://example.com/cirros.img", Name: "CirrOS",
	FileName: "cirros.img", SourceKey: "catalog:cirros", Checksum: sum, SizeBytes: 1000}

type fixture struct {
	t      *testing.T
	env    *testsuite.TestWorkflowEnvironment
	shared bool

	mu         sync.Mutex
	records    []string      // what the workflow recorded in the image record, in order
	verifying  chan struct{} // closed when VERIFYING is recorded
	converting chan struct{} // closed when CONVERTING is recorded
}

// recorded notes one write of the image record, as "STATUS node".
func (f *fixture) recorded(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, what)
}

func (f *fixture) recordsSoFar() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.records, "; ")
}

// newFixture is a test environment where the steps that do not touch the
// nodes succeed; each test mocks PickNode, StartOnNode and WatchDownload.
func newFixture(t *testing.T, shared bool) *fixture {
	env := newTestEnv()
	env.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	env.RegisterActivity(a)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflows.WorkflowID(imageID)})
	return &fixture{t: t, env: env, shared: shared, verifying: make(chan struct{}), converting: make(chan struct{})}
}

// defaults mocks the steps a test did not mock itself. Mocks match in the
// order they were made, so these come last.
func (f *fixture) defaults() {
	f.env.OnActivity(a.ResolveSource, mock.Anything, mock.Anything).Return(cirros, nil).Maybe()
	f.env.OnActivity(a.EnsureImage, mock.Anything, mock.Anything).Return(f.plan(), nil).Maybe()
	f.env.OnActivity(a.ResolveChecksum, mock.Anything, mock.Anything).Return(cirros, nil).Maybe()
	f.env.OnActivity(a.MarkDownloading, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.DownloadingRequest) error {
		f.recorded(fmt.Sprintf("DOWNLOADING %s attempt %d at %d of %d", r.NodeID, r.Attempt, r.BytesDone, r.BytesTotal))
		return nil
	}).Maybe()
	f.env.OnActivity(a.MarkVerifying, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.VerifyingRequest) error {
		f.recorded("VERIFYING " + r.NodeID)
		close(f.verifying)
		return nil
	}).Maybe()
	f.env.OnActivity(a.MarkConverting, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.VerifyingRequest) error {
		f.recorded("CONVERTING " + r.NodeID)
		close(f.converting)
		return nil
	}).Maybe()
	f.env.OnActivity(a.RecordFailovers, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.FailoversRequest) error {
		var nodes []string
		for _, fo := range r.Failovers {
			nodes = append(nodes, fo.NodeID)
		}
		f.recorded("FAILOVERS " + strings.Join(nodes, ","))
		return nil
	}).Maybe()
	f.env.OnActivity(a.MarkReady, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ReadyRequest) error {
		f.recorded("READY " + r.NodeID)
		return nil
	}).Maybe()
	f.env.OnActivity(a.MarkFailed, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.FailRequest) error {
		f.recorded("FAILED " + r.Code)
		return nil
	}).Maybe()
	f.env.OnActivity(a.MarkCancelled, mock.Anything, mock.Anything).Return(func(context.Context, activities.CancelledRequest) error {
		f.recorded("CANCELLED")
		return nil
	}).Maybe()
	f.env.OnActivity(a.CancelOnNode, mock.Anything, mock.Anything).Return(nil).Maybe()
	f.env.OnActivity(a.MarkWaiting, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.WaitingRequest) error {
		f.recorded("WAITING until " + r.Until.UTC().Format("01-02 15:04"))
		return nil
	}).Maybe()
}

func (f *fixture) plan() activities.Plan {
	return activities.Plan{ImageID: imageID, PoolID: poolID, FileName: cirros.FileName, Shared: f.shared,
		AssignedNodes: []string{"node-1", "node-2"}, NoNodeTimeout: 30 * time.Second, HeartbeatTimeout: 20 * time.Second}
}

func onNode(id string) any {
	return mock.MatchedBy(func(j activities.Job) bool { return j.NodeID == id })
}

func excluding(ids ...string) any {
	return mock.MatchedBy(func(r activities.PickRequest) bool { return strings.Join(r.Exclude, ",") == strings.Join(ids, ",") })
}

func pick(id string) activities.Pick {
	return activities.Pick{Node: &activities.Candidate{NodeID: id}, Assigned: []string{"node-1", "node-2"}}
}

// fileSum is the published file's checksum: the source was xz-compressed,
// so it is not the source's (sum).
var fileSum = "sha256:" + strings.Repeat("f", 64)

func finished(id string) activities.Finished {
	return activities.Finished{NodeID: id, Path: "/pools/" + id + "/cloud-images/cirros.img", SizeBytes: 1000, Checksum: sum,
		Format: "qcow2", VirtualSizeBytes: 1 << 30, Compression: "xz", FileChecksum: fileSum}
}

func (f *fixture) run(in workflows.Input) {
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, in)
	if !f.env.IsWorkflowCompleted() {
		f.t.Fatal("workflow did not complete")
	}
}

func (f *fixture) state() workflows.ProgressState {
	f.t.Helper()
	v, err := f.env.QueryWorkflow(workflows.ProgressQuery)
	if err != nil {
		f.t.Fatalf("query progress: %v", err)
	}
	var s workflows.ProgressState
	if err := v.Get(&s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) result() workflows.Result {
	f.t.Helper()
	if err := f.env.GetWorkflowError(); err != nil {
		f.t.Fatalf("workflow failed: %v", err)
	}
	var r workflows.Result
	if err := f.env.GetWorkflowResult(&r); err != nil {
		f.t.Fatal(err)
	}
	return r
}

// failedWith returns the workflow's error code and message.
func (f *fixture) failedWith() (string, string) {
	f.t.Helper()
	var appErr *temporal.ApplicationError
	if err := f.env.GetWorkflowError(); !errors.As(err, &appErr) {
		f.t.Fatalf("workflow error = %v, want an application error", err)
	}
	return appErr.Type(), appErr.Message()
}

func TestDownloadsOnThePickedNodeAndMarksReady(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.MatchedBy(func(r activities.PickRequest) bool {
		return r.PoolID == poolID && r.PreferredNodeID == "node-2" && len(r.Exclude) == 0
	})).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-2" && j.DownloadID == imageID && j.Checksum == sum && j.FileName == "cirros.img" && j.Attempt == 1
	})).Return(activities.Started{NodeID: "node-2"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-2")).Return(finished("node-2"), nil).Once()
	f.env.OnActivity(a.MarkReady, mock.Anything, activities.ReadyRequest{ImageID: imageID, Finished: activities.Finished{NodeID: "node-2",
		Path: finished("node-2").Path, SizeBytes: 1000, Checksum: sum, Format: "qcow2", VirtualSizeBytes: 1 << 30,
		Compression: "xz", FileChecksum: fileSum}, Failovers: []workflows.Failover{}}).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID, PreferredNodeID: "node-2"})

	want := workflows.Result{ImageID: imageID, NodeID: "node-2", Path: finished("node-2").Path, SizeBytes: 1000, Checksum: sum,
		FileChecksum: fileSum, Format: "qcow2"}
	if got := f.result(); got != want {
		t.Fatalf("result = %+v, want %+v", got, want)
	}
	s := f.state()
	if s.Status != "READY" || s.NodeID != "node-2" || s.Progress.Percent != 100 || len(s.Failovers) != 0 {
		t.Fatalf("progress state = %+v", s)
	}
	f.env.AssertExpectations(t)
}

// The workflow records every status itself, in order: DOWNLOADING once the
// node took the job, VERIFYING when the watch signals that the node
// verifies, READY at the end.
func TestWorkflowRecordsEachStatusInOrder(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(
		activities.Started{NodeID: "node-1", Path: "/p/cirros.img", BytesDone: 100, BytesTotal: 1000}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(
		func(ctx context.Context, j activities.Job) (activities.Finished, error) {
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: agentclient.StateVerifying,
				BytesDone: 1000, BytesTotal: 1000})
			select { // the node finishes only after the workflow saw it verify
			case <-f.verifying:
			case <-time.After(10 * time.Second):
				return activities.Finished{}, errors.New("VERIFYING was never recorded")
			}
			return finished("node-1"), nil
		}).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	f.result()
	want := "DOWNLOADING node-1 attempt 1 at 100 of 1000; VERIFYING node-1; READY node-1"
	if got := f.recordsSoFar(); got != want {
		t.Fatalf("recorded %q, want %q", got, want)
	}
}

// A pool with an image_format: the plan's format and the picked node's
// ability to convert reach the node's job, and when the watch signals that
// the node converts, the workflow records CONVERTING between VERIFYING and
// READY; a late VERIFYING signal does not move it back.
func TestWorkflowRecordsConvertingBetweenVerifyingAndReady(t *testing.T) {
	f := newFixture(t, false)
	plan := f.plan()
	plan.ImageFormat = "raw"
	f.env.OnActivity(a.EnsureImage, mock.Anything, mock.Anything).Return(plan, nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(
		activities.Pick{Node: &activities.Candidate{NodeID: "node-1", Converts: true}, Assigned: []string{"node-1"}}, nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-1" && j.ImageFormat == "raw" && j.NodeConverts
	})).Return(activities.Started{NodeID: "node-1", Path: "/p/cirros.img", BytesDone: 0, BytesTotal: 1000}, nil).Once()
	wait := func(ch chan struct{}, what string) error {
		select {
		case <-ch:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New(what + " was never recorded")
		}
	}
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(
		func(ctx context.Context, j activities.Job) (activities.Finished, error) {
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: agentclient.StateVerifying,
				BytesDone: 1000, BytesTotal: 1000})
			if err := wait(f.verifying, "VERIFYING"); err != nil {
				return activities.Finished{}, err
			}
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: agentclient.StateConverting,
				BytesDone: 400, BytesTotal: 1000})
			if err := wait(f.converting, "CONVERTING"); err != nil {
				return activities.Finished{}, err
			}
			// A late verifying signal does not move the image back.
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: agentclient.StateVerifying,
				BytesDone: 500, BytesTotal: 1000})
			return finished("node-1"), nil
		}).Once()
	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	f.result()
	want := "DOWNLOADING node-1 attempt 1 at 0 of 1000; VERIFYING node-1; CONVERTING node-1; READY node-1"
	if got := f.recordsSoFar(); got != want {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	f.env.AssertExpectations(t)
}

func TestFailsOverWhenConnectRetriesRunOut(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).
		Return(activities.Started{}, temporal.NewApplicationError("node agent at 10.0.0.1:9090 does not answer", fault.NodeUnreachable)).Times(3)
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-2" && j.Attempt == 2
	})).Return(activities.Started{NodeID: "node-2"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-2")).Return(finished("node-2"), nil).Once()
	// On a local pool the node left behind is asked to clean up.
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-2" {
		t.Fatalf("result on %s, want node-2", r.NodeID)
	}
	s := f.state()
	if len(s.Failovers) != 1 || s.Failovers[0].NodeID != "node-1" || !strings.Contains(s.Failovers[0].Reason, "does not answer") {
		t.Fatalf("failovers = %+v", s.Failovers)
	}
	if s.Progress.Attempt != 2 {
		t.Fatalf("attempt = %d, want 2", s.Progress.Attempt)
	}
	f.env.AssertExpectations(t)
}

func TestFailsOverWhenNodeDiesMidTransferOnSharedPool(t *testing.T) {
	f := newFixture(t, true)
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(
		func(ctx context.Context, j activities.Job) (activities.Finished, error) {
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: "running", BytesDone: 400, BytesTotal: 1000, BytesPerSecond: 100})
			return activities.Finished{}, temporal.NewNonRetryableApplicationError("node node-1 unreachable for 30s", activities.FailoverError, nil)
		}).Once()
	var ready activities.ReadyRequest
	f.env.OnActivity(a.MarkReady, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ReadyRequest) error {
		ready = r
		return nil
	}).Once()
	// The same job id on the next node: it resumes the shared partial file.
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-2" && j.DownloadID == imageID && j.Shared && j.Attempt == 2
	})).Return(activities.Started{NodeID: "node-2", BytesDone: 400}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-2")).Return(finished("node-2"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-2" {
		t.Fatalf("result on %s, want node-2", r.NodeID)
	}
	s := f.state()
	if len(s.Failovers) != 1 || s.Failovers[0].NodeID != "node-1" || !strings.Contains(s.Failovers[0].Reason, "unreachable") || s.Failovers[0].At.IsZero() {
		t.Fatalf("failovers = %+v", s.Failovers)
	}
	// The image keeps its failovers after the workflow ends.
	if len(ready.Failovers) != 1 || ready.Failovers[0].NodeID != "node-1" {
		t.Fatalf("MarkReady got failovers %+v, want node-1's", ready.Failovers)
	}
	// The failover is in the image record before the next node starts,
	// not only at the end.
	want := "DOWNLOADING node-1 attempt 1 at 0 of 1000; FAILOVERS node-1; DOWNLOADING node-2 attempt 2 at 400 of 1000"
	if got := f.recordsSoFar(); got != want {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	// On a shared pool the partial data is what node-2 resumes: no clean-up.
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0)
	f.env.AssertExpectations(t)
}

func TestNonRetryableNodeErrorsFailAtOnceWithTheirCode(t *testing.T) {
	for _, code := range []string{fault.ChecksumMismatch, fault.UpstreamNotFound, fault.NotADiskImage} {
		t.Run(code, func(t *testing.T) {
			f := newFixture(t, false)
			f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
			f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
			f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).
				Return(activities.Finished{}, temporal.NewNonRetryableApplicationError("the image is bad: "+code, code, nil)).Once()
			f.env.OnActivity(a.MarkFailed, mock.Anything, activities.FailRequest{ImageID: imageID, Code: code, Message: "the image is bad: " + code,
				Failovers: []workflows.Failover{}}).Return(nil).Once()

			f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

			if got, msg := f.failedWith(); got != code || !strings.Contains(msg, "the image is bad") {
				t.Fatalf("failed with %s: %s, want %s", got, msg, code)
			}
			if s := f.state(); s.Status != "FAILED" || len(s.Failovers) != 0 {
				t.Fatalf("progress state = %+v", s)
			}
			f.env.AssertActivityNumberOfCalls(t, "PickNode", 1)
			f.env.AssertExpectations(t)
		})
	}
}

func TestNoNodeAvailableAfterBoundedWait(t *testing.T) {
	f := newFixture(t, false)
	start := f.env.Now()
	picks := 0
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.PickRequest) (activities.Pick, error) {
		picks++
		return activities.Pick{Assigned: []string{"node-1", "node-2"}, Refused: []activities.Refusal{
			{NodeID: "node-1", Reason: "health check of 10.0.0.1:9090 failed: connection refused"},
			{NodeID: "node-2", Reason: `its agent does not serve pool "pool-1"`},
		}}, nil
	})
	var failedReq activities.FailRequest
	f.env.OnActivity(a.MarkFailed, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.FailRequest) error {
		failedReq = r
		return nil
	})
	var waits []activities.WaitingRequest
	f.env.OnActivity(a.MarkWaiting, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.WaitingRequest) error {
		waits = append(waits, r)
		return nil
	})

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	code, msg := f.failedWith()
	if code != fault.NoNodeAvailable {
		t.Fatalf("failed with %s, want %s", code, fault.NoNodeAvailable)
	}
	// While it waited, the image said so once: for which pool, until
	// when (the plan's 30 s), and why each node is refused.
	if len(waits) != 1 || !waits[0].Until.Equal(start.Add(30*time.Second)) ||
		!strings.HasPrefix(waits[0].Message, `waiting for a node of pool "pool-1" until `) ||
		!strings.Contains(waits[0].Message, "node-1: health check of 10.0.0.1:9090 failed: connection refused") {
		t.Errorf("the image recorded waits %+v, want one for a node of pool-1 until %s", waits, start.Add(30*time.Second))
	}
	for _, want := range []string{`pool "pool-1"`, "Assigned nodes: node-1, node-2", "connection refused", "does not serve pool", "Start or fix the node agents"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if failedReq.Code != fault.NoNodeAvailable || failedReq.Message != msg {
		t.Errorf("image marked failed with %+v", failedReq)
	}
	if waited := f.env.Now().Sub(start); waited < 30*time.Second {
		t.Errorf("gave up after %s, want the plan's 30s", waited)
	}
	if picks < 3 || picks > 8 {
		t.Errorf("PickNode called %d times in 30s, want a few with backoff", picks)
	}
	f.env.AssertActivityNumberOfCalls(t, "StartOnNode", 0)
}

// A pool's only agent was down when the download was asked for (the API
// accepts it anyway): the image says it waits for a node, and the node
// that comes back within the bounded wait takes the download.
func TestNodeThatComesBackDuringTheWaitTakesTheDownload(t *testing.T) {
	f := newFixture(t, false)
	down := activities.Pick{Assigned: []string{"node-1"}, Refused: []activities.Refusal{
		{NodeID: "node-1", Reason: "health check of 10.0.0.1:9090 failed: connection refused"}}}
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(down, nil).Twice()
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(finished("node-1"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if s := f.state(); s.Status != "READY" || s.Progress.WaitingUntil != nil {
		t.Fatalf("progress state = %+v, want READY and no wait", s)
	}
	if got := f.recordsSoFar(); !strings.HasPrefix(got, "WAITING until ") || !strings.Contains(got, "DOWNLOADING node-1") {
		t.Fatalf("records %q, want the wait for a node, then DOWNLOADING on node-1", got)
	}
}

func TestNoNodeAvailableNamesTheNodesThatFailed(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(activities.Pick{
		Assigned: []string{"node-1"}, Refused: []activities.Refusal{{NodeID: "node-1", Reason: "already failed in this download"}}}, nil)
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).
		Return(activities.Finished{}, temporal.NewNonRetryableApplicationError("node node-1: disk_full: no space left", activities.FailoverError, nil)).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	code, msg := f.failedWith()
	if code != fault.NoNodeAvailable || !strings.Contains(msg, "Tried in this download and failed: node-1 (node node-1: disk_full: no space left)") {
		t.Fatalf("failed with %s: %s", code, msg)
	}
}

// A machine without internet access: every node gives up on the mirror.
// Waiting for another node cannot help, so the download fails at once with
// upstream_error and says to check the nodes' access to the mirror.
func TestMirrorUnreachableFromEveryNodeFailsWithUpstreamError(t *testing.T) {
	f := newFixture(t, false)
	start := f.env.Now()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1", "node-2")).Return(
		activities.Pick{Assigned: []string{"node-1", "node-2"}}, nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(
		func(_ context.Context, j activities.Job) (activities.Started, error) {
			return activities.Started{NodeID: j.NodeID}, nil
		}).Twice()
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(
		func(_ context.Context, j activities.Job) (activities.Finished, error) {
			return activities.Finished{}, temporal.NewNonRetryableApplicationError(
				"node "+j.NodeID+": upstream_error: cannot reach the mirror: no such host", activities.FailoverError, nil, fault.UpstreamError)
		}).Twice()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	code, msg := f.failedWith()
	if code != fault.UpstreamError {
		t.Fatalf("failed with %s: %s, want %s", code, msg, fault.UpstreamError)
	}
	for _, want := range []string{"could not be reached from any node", "node-1", "node-2", "no such host", "internet access"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if waited := f.env.Now().Sub(start); waited >= 30*time.Second {
		t.Errorf("waited %s for a node; want no wait once every node failed on the mirror", waited)
	}
	if s := f.state(); len(s.Failovers) != 2 || s.Failovers[0].Code != fault.UpstreamError {
		t.Errorf("failovers = %+v, want two with code upstream_error", s.Failovers)
	}
	f.env.AssertExpectations(t)
}

// A plain Go error whose retries run out carries a Go type name as its
// Temporal error type: the image must fail with a contract code, internal.
func TestPlainErrorFailsWithTheInternalCode(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.EnsureImage, mock.Anything, mock.Anything).Return(activities.Plan{}, errors.New("database is locked"))

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if code, msg := f.failedWith(); code != fault.Internal || !strings.Contains(msg, "database is locked") {
		t.Fatalf("failed with %s: %s, want internal with the error's message", code, msg)
	}
}
