package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/workflows"
)

// eightPM is when the windowed tests start: 20:00 UTC, 22:00 in Berlin.
var eightPM = time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC)

// withWindows starts the fixture's workflow at eightPM with a plan that
// has transfer windows.
func (f *fixture) withWindows(zone string, windows ...string) {
	f.env.SetStartTime(eightPM)
	p := f.plan()
	p.TransferWindows, p.TimeZone = windows, zone
	f.env.OnActivity(a.EnsureImage, mock.Anything, mock.Anything).Return(p, nil).Once()
}

func pausingNode(id string) activities.Pick {
	p := pick(id)
	p.Node.Pauses = true
	return p
}

// clockLog notes the workflow time at which mocked steps ran.
type clockLog struct {
	mu  sync.Mutex
	at  map[string][]time.Time
	env interface{ Now() time.Time }
}

func (c *clockLog) note(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at[what] = append(c.at[what], c.env.Now().UTC())
}

func (c *clockLog) first(what string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.at[what]) == 0 {
		return time.Time{}
	}
	return c.at[what][0]
}

func TestOutsideItsWindowADownloadWaitsPendingAndSaysUntilWhen(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("Europe/Berlin", "23:00-06:00") // opens at 21:00 UTC
	clock := &clockLog{at: map[string][]time.Time{}, env: f.env}
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.PickRequest) (activities.Pick, error) {
		clock.note("pick")
		return pick("node-1"), nil
	}).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()
	var waiting workflows.ProgressState
	f.env.RegisterDelayedCallback(func() { waiting = f.state() }, 30*time.Minute)

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-1" {
		t.Fatalf("result %+v", r)
	}
	opens := time.Date(2026, 6, 1, 21, 0, 0, 0, time.UTC)
	p := waiting.Progress
	if waiting.Status != "PENDING" || p.WaitingUntil == nil || !p.WaitingUntil.Equal(opens) ||
		!strings.Contains(p.Message, "until 2026-06-01 23:00 CEST") || !strings.Contains(p.Message, "23:00-06:00, Europe/Berlin") {
		t.Fatalf("progress query while waiting = %+v, want PENDING waiting until %s with a message saying so", waiting, opens)
	}
	if at := clock.first("pick"); at.Before(opens) {
		t.Fatalf("node picked at %s, before the window opened at %s", at, opens)
	}
	if got, want := f.recordsSoFar(), "WAITING until 06-01 21:00; DOWNLOADING node-1 attempt 1 at 0 of 1000; READY node-1"; got != want {
		t.Fatalf("records = %q, want %q", got, want)
	}
	if s := f.state(); s.Progress.WaitingUntil != nil || s.Progress.Message != "" {
		t.Fatalf("READY image still says it waits: %+v", s.Progress)
	}
}

func TestInsideItsWindowADownloadStartsAtOnce(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("UTC", "19:00-21:00", "22:00-23:00")
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	f.result()
	if got := f.recordsSoFar(); strings.Contains(got, "WAITING") {
		t.Fatalf("records = %q: waited inside a window", got)
	}
}

// watchUntilCancelled is a watch that runs (on the workflow clock) for d
// and ends cancelled if the workflow cancelled it meanwhile.
func (f *fixture) watchUntilCancelled(node string, d time.Duration, then activities.Finished) {
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode(node)).After(d).Return(
		func(ctx context.Context, _ activities.Job) (activities.Finished, error) {
			if ctx.Err() != nil {
				return activities.Finished{}, ctx.Err()
			}
			return then, nil
		}).Once()
}

func TestAtTheEndOfItsWindowADownloadPausesAndResumesAtTheNextFromThePartial(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("UTC", "21:00-23:00")
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pausingNode("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.watchUntilCancelled("node-1", 3*time.Hour, finished("node-1")) // the window closes first
	f.env.OnActivity(a.PauseOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).
		Return(activities.Paused{State: agentclient.StatePaused, BytesDone: 400}, nil).Once()
	// The next window: the same job on the same node goes on from its partial data.
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1", BytesDone: 400}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()
	var paused workflows.ProgressState
	f.env.RegisterDelayedCallback(func() { paused = f.state() }, 8*time.Hour) // 04:00, between the windows

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-1" {
		t.Fatalf("result %+v", r)
	}
	want := "WAITING until 06-01 21:00; DOWNLOADING node-1 attempt 1 at 0 of 1000; " +
		"WAITING until 06-02 21:00; DOWNLOADING node-1 attempt 1 at 400 of 1000; READY node-1"
	if got := f.recordsSoFar(); got != want {
		t.Fatalf("records = %q, want %q", got, want)
	}
	next := time.Date(2026, 6, 2, 21, 0, 0, 0, time.UTC)
	p := paused.Progress
	if paused.Status != "PENDING" || paused.NodeID != "node-1" || p.BytesDone != 400 || p.WaitingUntil == nil || !p.WaitingUntil.Equal(next) ||
		!strings.Contains(p.Message, "until 2026-06-02 21:00 UTC") || p.BytesPerSecond != 0 {
		t.Fatalf("progress while paused = %+v, want PENDING at 400 bytes, waiting until %s", paused, next)
	}
	if s := f.state(); len(s.Failovers) != 0 || s.Progress.Attempt != 1 {
		t.Fatalf("a pause counted as a failover: %+v", s)
	}
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0) // the partial data stays
	f.env.AssertExpectations(t)
}

func TestANodeThatCannotPauseRunsPastTheEndOfItsWindow(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("UTC", "21:00-23:00")
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil).Once() // an agent without pause
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.watchUntilCancelled("node-1", 3*time.Hour, finished("node-1"))

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	f.result()
	f.env.AssertActivityNumberOfCalls(t, "PauseOnNode", 0)
	f.env.AssertActivityNumberOfCalls(t, "StartOnNode", 1)
}

func TestADownloadPastItsTransferWhenTheWindowClosesRunsToItsEnd(t *testing.T) {
	t.Run("verifying", func(t *testing.T) {
		f := newFixture(t, false)
		f.withWindows("UTC", "21:00-23:00")
		f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pausingNode("node-1"), nil).Once()
		f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
		f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).After(3 * time.Hour).Return(
			func(ctx context.Context, _ activities.Job) (activities.Finished, error) {
				return finished("node-1"), ctx.Err()
			}).Once()
		f.env.RegisterDelayedCallback(func() {
			f.env.SignalWorkflow(activities.ProgressSignal, activities.ProgressUpdate{NodeID: "node-1", State: agentclient.StateVerifying, BytesDone: 1000, BytesTotal: 1000})
		}, 90*time.Minute) // 21:30: every byte is there

		f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

		f.result()
		f.env.AssertActivityNumberOfCalls(t, "PauseOnNode", 0)
	})
	t.Run("finished as the pause came", func(t *testing.T) {
		f := newFixture(t, false)
		f.withWindows("UTC", "21:00-23:00")
		f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pausingNode("node-1"), nil).Once()
		f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
		f.watchUntilCancelled("node-1", 3*time.Hour, finished("node-1"))
		f.env.OnActivity(a.PauseOnNode, mock.Anything, mock.Anything).Return(activities.Paused{State: agentclient.StateCompleted, BytesDone: 1000}, nil).Once()
		f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()

		f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

		if r := f.result(); r.NodeID != "node-1" {
			t.Fatalf("result %+v", r)
		}
		if got := f.recordsSoFar(); strings.Count(got, "WAITING") != 1 {
			t.Fatalf("records = %q: waited again after the node finished", got)
		}
		f.env.AssertActivityNumberOfCalls(t, "StartOnNode", 1)
	})
}

func TestCancelWhilePausedRemovesThePartialDataOnTheNode(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("UTC", "21:00-23:00")
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pausingNode("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.watchUntilCancelled("node-1", 3*time.Hour, finished("node-1"))
	f.env.OnActivity(a.PauseOnNode, mock.Anything, mock.Anything).Return(activities.Paused{State: agentclient.StatePaused, BytesDone: 400}, nil).Once()
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).Return(nil).Once()
	f.env.OnActivity(a.MarkCancelled, mock.Anything, cancelledReq).Return(nil).Once()
	f.env.RegisterDelayedCallback(f.env.CancelWorkflow, 8*time.Hour) // 04:00, paused

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if err := f.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	if s := f.state(); s.Status != "CANCELLED" || s.Progress.WaitingUntil != nil {
		t.Fatalf("state = %+v, want CANCELLED and no longer waiting", s)
	}
	f.env.AssertExpectations(t)
}

func TestAPauseThatCannotReachTheNodeFailsOverAfterTheWait(t *testing.T) {
	f := newFixture(t, true)
	f.withWindows("UTC", "21:00-23:00")
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pausingNode("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.watchUntilCancelled("node-1", 3*time.Hour, finished("node-1"))
	f.env.OnActivity(a.PauseOnNode, mock.Anything, mock.Anything).Return(activities.Paused{},
		temporal.NewApplicationError("node-1 does not answer", fault.NodeUnreachable))
	clock := &clockLog{at: map[string][]time.Time{}, env: f.env}
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(func(context.Context, activities.PickRequest) (activities.Pick, error) {
		clock.note("pick node-2")
		return pausingNode("node-2"), nil
	}).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-2")).Return(activities.Started{NodeID: "node-2", BytesDone: 300}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-2")).Return(finished("node-2"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-2" {
		t.Fatalf("result on %s, want node-2", r.NodeID)
	}
	if at, next := clock.first("pick node-2"), time.Date(2026, 6, 2, 21, 0, 0, 0, time.UTC); at.Before(next) {
		t.Fatalf("the next node was picked at %s, before the next window at %s", at, next)
	}
	if s := f.state(); len(s.Failovers) != 1 || s.Failovers[0].NodeID != "node-1" {
		t.Fatalf("failovers = %+v", s.Failovers)
	}
}

func TestBadTransferWindowsFailWithInvalidRequest(t *testing.T) {
	f := newFixture(t, false)
	f.withWindows("Mars/Olympus", "22:00-06:00")

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	code, msg := f.failedWith()
	if code != fault.InvalidRequest || !strings.Contains(msg, "IANA") || !strings.Contains(msg, "transfer windows") {
		t.Fatalf("failed with %s: %s", code, msg)
	}
	if got := f.recordsSoFar(); got != "FAILED invalid_request" {
		t.Fatalf("records = %q", got)
	}
}
