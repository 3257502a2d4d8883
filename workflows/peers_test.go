package workflows_test

import (
	"context"
	"errors"
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

// peerInput is a distribution's copy: two READY copies to read from.
var peerInput = workflows.Input{ImageID: imageID, CatalogID: "cirros", PoolID: poolID, Peers: []string{"src-a", "src-b"}, DistributionID: "d1"}

// TestPeerCopyWhoseSourceDiesResumesTheSameJobFromTheNextCopyThenTheMirror:
// the first source dies mid-copy: the same node-side job (same id: the
// agent keeps its bytes) is started again without it; the second dies too:
// the job is removed and the copy goes to the mirror under another id, and
// the target (its node fine) is never failed over.
func TestPeerCopyWhoseSourceDiesResumesTheSameJobFromTheNextCopyThenTheMirror(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil)
	var starts []activities.Job
	var cancelled []string
	// The removal runs in the background: the mirror job waits for it, as
	// a real transfer would last longer, so the workflow does not end first.
	removed := make(chan struct{})
	f.env.OnActivity(a.CancelOnNode, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.CancelRequest) error {
		cancelled = append(cancelled, r.DownloadID)
		if len(cancelled) == 1 {
			close(removed)
		}
		return nil
	})
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(func(_ context.Context, j activities.Job) (activities.Started, error) {
		starts = append(starts, j)
		st := activities.Started{NodeID: j.NodeID, BytesTotal: 1000}
		for _, p := range j.Peers {
			if !slices.Contains(j.DeadPeers, p) {
				st.Peer = &activities.PeerUsed{ImageID: p, NodeID: "node-of-" + p}
				break
			}
		}
		return st, nil
	})
	var readyReq activities.ReadyRequest
	f.env.OnActivity(a.MarkReady, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ReadyRequest) error {
		readyReq = r
		return nil
	})
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(func(_ context.Context, j activities.Job) (activities.Finished, error) {
		if j.PeerImageID != "" {
			return activities.Finished{}, temporal.NewNonRetryableApplicationError("source gone", activities.PeerFailedError, nil, fault.UpstreamError)
		}
		select {
		case <-removed:
		case <-time.After(10 * time.Second):
			t.Errorf("the peer copy left for the mirror was not removed while the mirror job ran")
		}
		return finished("node-1"), nil
	})
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, peerInput)
	if err := f.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range starts {
		ids = append(ids, j.DownloadID+"/"+strings.Join(j.DeadPeers, ","))
	}
	want := []string{imageID + "/", imageID + "/src-a", imageID + "-mirror/src-a,src-b"}
	if !slices.Equal(ids, want) {
		t.Fatalf("jobs started (id/dead peers) %v, want %v", ids, want)
	}
	if len(starts[2].Peers) != 0 {
		t.Fatalf("the mirror job still names peers %v", starts[2].Peers)
	}
	if !slices.Equal(cancelled, []string{imageID}) {
		t.Fatalf("jobs removed %v, want only the peer copy left for the mirror", cancelled)
	}
	if strings.Contains(f.recordsSoFar(), "FAILOVERS") {
		t.Fatalf("the target was failed over: %s", f.recordsSoFar())
	}
	if readyReq.Source != "" {
		t.Fatalf("READY from the mirror recorded source %q, want the mirror's (empty)", readyReq.Source)
	}
}

// TestPeerCopyRecordsItsSourceNode: READY from a peer, the image is
// source "peer", keeps the source's checksum, and the result names the node.
func TestPeerCopyRecordsItsSourceNode(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil)
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1", BytesTotal: 1000,
		Peer: &activities.PeerUsed{ImageID: "src-a", NodeID: "node-9"}}, nil)
	fin := finished("node-1")
	fin.Checksum = fileSum // the agent verified the file against the source's file checksum
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(fin, nil)
	var readyReq activities.ReadyRequest
	f.env.OnActivity(a.MarkReady, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ReadyRequest) error {
		readyReq = r
		return nil
	})
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, peerInput)
	var res workflows.Result
	if err := f.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.SourceNodeID != "node-9" || readyReq.Source != activities.SourcePeer || readyReq.Checksum != sum || res.Checksum != sum {
		t.Fatalf("result %+v, ready %+v: want source node-9, source peer, the source's checksum %s", res, readyReq, sum)
	}
}

// TestDistributionCopyIntoAFullPoolFailsDiskFullAtOnce: a distribution's
// copy whose only node has no room fails disk_full, without waiting for
// another node.
func TestDistributionCopyIntoAFullPoolFailsDiskFullAtOnce(t *testing.T) {
	f := newFixture(t, false)
	f.env.OnActivity(a.PickNode, mock.Anything, excluding()).Return(pick("node-1"), nil).Once()
	f.env.OnActivity(a.PickNode, mock.Anything, excluding("node-1")).Return(activities.Pick{Assigned: []string{"node-1"}}, nil).Once()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1", BytesTotal: 1000}, nil)
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).
		Return(activities.Finished{}, temporal.NewNonRetryableApplicationError("node node-1: disk_full: no space left", activities.FailoverError, nil, fault.DiskFull))
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, peerInput)
	var appErr *temporal.ApplicationError
	err := f.env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != fault.DiskFull || !strings.Contains(appErr.Message(), "no room") {
		t.Fatalf("error %v, want disk_full", err)
	}
	if !strings.Contains(f.recordsSoFar(), "FAILED disk_full") {
		t.Fatalf("records %s, want FAILED disk_full", f.recordsSoFar())
	}
}
