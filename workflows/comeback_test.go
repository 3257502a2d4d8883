package workflows_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/workflows"
)

// unreachable is the watch's error for a node that stayed unreachable
// past the node grace (its agent was killed, the node rebooted).
func unreachable(node string) error {
	return temporal.NewNonRetryableApplicationError("node "+node+" unreachable for 31s: connection refused",
		activities.FailoverError, nil, fault.NodeUnreachable)
}

// lastResort matches a pick that excludes the nodes and may still take
// back the last-resort ones.
func lastResort(exclude, again []string) any {
	return mock.MatchedBy(func(r activities.PickRequest) bool {
		return slices.Equal(r.Exclude, exclude) && slices.Equal(r.LastResort, again)
	})
}

// A local pool's only node restarts after the node grace (found by the
// chaos test: its agent was killed, and came back 3 s later with a 2 s
// grace). The download used to leave it for good, wait for another node
// and fail no_node_available; now the node is picked again once it is
// back and resumes its partial data, which is not removed meanwhile.
func TestPoolsOnlyNodeBackAfterTheGraceResumesTheDownload(t *testing.T) {
	f := newFixture(t, false)
	down := activities.Pick{Assigned: []string{"node-1"}, Refused: []activities.Refusal{
		{NodeID: "node-1", Reason: "health check of 10.0.0.1:9090 failed: connection refused"}}}
	f.env.OnActivity(a.PickNode, mock.Anything, lastResort(nil, nil)).Return(pick("node-1"), nil).Once()
	again := lastResort([]string{"node-1"}, []string{"node-1"})
	f.env.OnActivity(a.PickNode, mock.Anything, again).Return(down, nil).Twice()
	f.env.OnActivity(a.PickNode, mock.Anything, again).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, onNode("node-1")).Return(activities.Started{NodeID: "node-1"}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(activities.Finished{}, unreachable("node-1")).Once()
	// Started again, the node's agent finds its job and goes on with it.
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.MatchedBy(func(j activities.Job) bool {
		return j.NodeID == "node-1" && j.Attempt == 2
	})).Return(activities.Started{NodeID: "node-1", BytesDone: 600}, nil).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(finished("node-1"), nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-1" {
		t.Fatalf("result on %s, want node-1", r.NodeID)
	}
	if s := f.state(); len(s.Failovers) != 1 || s.Failovers[0].Code != fault.NodeUnreachable {
		t.Errorf("failovers = %+v, want node-1's as node_unreachable", s.Failovers)
	}
	if got := f.recordsSoFar(); !strings.Contains(got, "FAILOVERS node-1; DOWNLOADING node-1 attempt 2 at 600 of 1000") {
		t.Errorf("records %q, want the download resumed on node-1 at 600 bytes", got)
	}
	// Its partial data is what it resumed: nothing asked it to go.
	f.env.AssertActivityNumberOfCalls(t, "CancelOnNode", 0)
	f.env.AssertExpectations(t)
}

// Another node of the local pool goes first; the unreachable node's
// partial data is removed once the download goes on there.
func TestUnreachableNodeOfALocalPoolIsCleanedUpWhenAnotherNodeTakesOver(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, lastResort(nil, nil)).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, lastResort([]string{"node-1"}, []string{"node-1"})).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(
		func(_ context.Context, j activities.Job) (activities.Started, error) {
			return activities.Started{NodeID: j.NodeID}, nil
		}).Twice()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(activities.Finished{}, unreachable("node-1")).Once()
	f.cleanedUpWhileOtherFinishes("node-1", "node-2")

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-2" {
		t.Fatalf("result on %s, want node-2", r.NodeID)
	}
	f.env.AssertExpectations(t)
}

// A node that keeps dropping out is taken back a bounded number of times,
// then left for good: the download fails no_node_available instead of
// going round for ever, and its partial data is removed.
func TestNodeThatKeepsBecomingUnreachableIsLeftForGood(t *testing.T) {
	f := newFixture(t, false)
	var picks []activities.PickRequest
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.PickRequest) (activities.Pick, error) {
		picks = append(picks, r)
		if slices.Contains(r.Exclude, "node-1") && !slices.Contains(r.LastResort, "node-1") {
			return activities.Pick{Assigned: []string{"node-1"}, Refused: []activities.Refusal{
				{NodeID: "node-1", Reason: "already failed in this download"}}}, nil
		}
		return pick("node-1"), nil
	})
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1"}, nil)
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(activities.Finished{}, unreachable("node-1"))
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: "node-1", DownloadID: imageID}).Return(nil).Once()

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if code, msg := f.failedWith(); code != fault.NoNodeAvailable {
		t.Fatalf("failed with %s: %s, want no_node_available", code, msg)
	}
	f.env.AssertActivityNumberOfCalls(t, "StartOnNode", 4) // the first time and three returns
	if s := f.state(); len(s.Failovers) != 4 {
		t.Errorf("%d failovers, want 4", len(s.Failovers))
	}
	f.env.AssertExpectations(t)
}

// A node that failed for a reason of its own (a full disk) is not taken
// back, as before.
func TestNodeThatFailedOtherwiseIsNotALastResort(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, lastResort(nil, nil)).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, lastResort([]string{"node-1"}, nil)).Return(pick("node-2"), nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(
		func(_ context.Context, j activities.Job) (activities.Started, error) {
			return activities.Started{NodeID: j.NodeID}, nil
		}).Twice()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode("node-1")).Return(activities.Finished{},
		temporal.NewNonRetryableApplicationError("node node-1: disk_full: no space left", activities.FailoverError, nil, fault.DiskFull)).Once()
	// Left for good: cleaned up at once, as before.
	f.cleanedUpWhileOtherFinishes("node-1", "node-2")

	f.run(workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID})

	if r := f.result(); r.NodeID != "node-2" {
		t.Fatalf("result on %s, want node-2", r.NodeID)
	}
	f.env.AssertExpectations(t)
}

// cleanedUpWhileOtherFinishes expects left to be asked once to remove its
// partial data, and other to finish the download after that. The clean-up
// runs in the background, so other waits for it, as a real transfer would
// last longer: the workflow does not end first.
func (f *fixture) cleanedUpWhileOtherFinishes(left, other string) {
	cleaned := make(chan struct{})
	f.env.OnActivity(a.CancelOnNode, mock.Anything, activities.CancelRequest{NodeID: left, DownloadID: imageID}).Return(
		func(context.Context, activities.CancelRequest) error {
			close(cleaned)
			return nil
		}).Once()
	f.env.OnActivity(a.WatchDownload, mock.Anything, onNode(other)).Return(
		func(context.Context, activities.Job) (activities.Finished, error) {
			select {
			case <-cleaned:
			case <-time.After(10 * time.Second):
				f.t.Errorf("%s was not asked to clean up while %s downloaded", left, other)
			}
			return finished(other), nil
		}).Once()
}
