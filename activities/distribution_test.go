package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
)

const fileSum = "sha256:00000000000000000000000000000000000000000000000000000000000000ff"

// readyCopy adds a READY image of the source in a pool of its own on node.
func (b *bench) readyCopy(id, poolID, nodeID string) {
	b.t.Helper()
	b.readyIn(&store.Image{ID: id, Name: "x", SourceKey: "catalog:x", PoolID: poolID, FileName: "x.qcow2"}, nodeID)
}

// readyIn adds img, READY on node, in a pool of its own (img.PoolID).
func (b *bench) readyIn(img *store.Image, nodeID string) {
	b.t.Helper()
	ctx := context.Background()
	if err := b.store.CreatePool(ctx, &store.Pool{ID: img.PoolID, Type: "local"}, []string{nodeID}); err != nil {
		b.t.Fatal(err)
	}
	if _, _, err := b.store.CreateImage(ctx, img); err != nil {
		b.t.Fatal(err)
	}
	err := b.store.Transition(ctx, img.ID, store.ToReady{NodeID: nodeID, Path: "/p/" + img.ID, SizeBytes: 1234, Checksum: sum256, Format: "qcow2", FileChecksum: fileSum})
	if err != nil {
		b.t.Fatal(err)
	}
}

// TestStartOnNodeCopiesFromAReadyPeerWithATokenOfTheSourceNode: the target
// gets the source's node, address, pool and file, a token that opens that
// one file on the SOURCE node, the source's file checksum, and no URL; a
// dead copy is skipped; with none left the start says so (the workflow
// then goes to the mirror); an agent without peer_copy downloads the URL.
func TestStartOnNodeCopiesFromAReadyPeerWithATokenOfTheSourceNode(t *testing.T) {
	target := newFakeAgent(t, "node-1", "pool-1")
	src1 := newFakeAgent(t, "node-2", "p2")
	src2 := newFakeAgent(t, "node-3", "p3")
	b := newBench(t, false, target, src1, src2)
	b.readyCopy("copy-2", "p2", "node-2")
	b.readyCopy("copy-3", "p3", "node-3")
	j := job("node-1", false)
	j.Peers = []string{"copy-2", "copy-3"}
	j.NodeFeatures = []string{agentclient.FeaturePeerCopy}

	v, err := b.env.ExecuteActivity(b.acts.StartOnNode, j)
	if err != nil {
		t.Fatal(err)
	}
	var st activities.Started
	if err := v.Get(&st); err != nil || st.Peer == nil || st.Peer.ImageID != "copy-2" || st.Peer.NodeID != "node-2" {
		t.Fatalf("started %+v (%v), want copy-2 on node-2 as its peer", st, err)
	}
	got := target.started()[0]
	if got.URL != "" || got.Peer == nil || got.Peer.NodeID != "node-2" || got.Peer.Address != src1.address() || got.Peer.PoolID != "p2" ||
		got.Peer.FileName != "x.qcow2" || got.Checksum != fileSum || got.SizeBytes != 1234 || got.Format != "qcow2" {
		t.Fatalf("the target got %+v (peer %+v), want a copy of node-2's p2/x.qcow2 verified against its file checksum", got, got.Peer)
	}
	// The token opens that file on node-2, and nothing on the target.
	v2, err := nodeauth.NewVerifier(nodeauth.Credential("node-token", "node-2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.Check(got.Peer.Token, "GET", agentclient.FilePath("p2", "x.qcow2")); err != nil {
		t.Fatalf("the token does not open the source's file on node-2: %v", err)
	}
	if err := v2.Check(got.Peer.Token, "GET", agentclient.FilePath("p2", "other.qcow2")); err == nil {
		t.Fatal("the token opens another file of node-2")
	}
	v1, _ := nodeauth.NewVerifier(nodeauth.Credential("node-token", "node-1"))
	if err := v1.Check(got.Peer.Token, "GET", agentclient.FilePath("p2", "x.qcow2")); err == nil {
		t.Fatal("the token is the target's, not the source's")
	}

	// copy-2 died: the next READY copy.
	j.DeadPeers = []string{"copy-2"}
	if _, err := b.env.ExecuteActivity(b.acts.StartOnNode, j); err != nil {
		t.Fatal(err)
	}
	if got := target.started()[1]; got.Peer == nil || got.Peer.NodeID != "node-3" {
		t.Fatalf("with copy-2 dead the target got %+v, want node-3's copy", got.Peer)
	}
	// An offline source is skipped too; none left: the workflow is told.
	if err := b.store.RecordNodeHealth(context.Background(), "node-3", store.NodeHealth{Online: false, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err = b.env.ExecuteActivity(b.acts.StartOnNode, j)
	if typ, _ := errorType(t, err); typ != activities.PeerFailedError || !strings.Contains(err.Error(), "no READY copy") {
		t.Fatalf("no usable copy left: %v, want %s", err, activities.PeerFailedError)
	}
	// An agent that cannot copy from peers downloads the URL.
	j.DeadPeers, j.NodeFeatures = nil, nil
	if _, err := b.env.ExecuteActivity(b.acts.StartOnNode, j); err != nil {
		t.Fatal(err)
	}
	if got := target.started()[len(target.started())-1]; got.Peer != nil || got.URL != j.URL || got.Checksum != sum256 {
		t.Fatalf("an agent without peer_copy got %+v, want the mirror's URL and checksum", got)
	}
}

// TestWatchOfAPeerCopyThatFailsBlamesTheSource: the target's job fails
// while copying from a peer: the source's fault (PeerFailedError), except
// a full disk, which is the target's.
func TestWatchOfAPeerCopyThatFailsBlamesTheSource(t *testing.T) {
	for _, tc := range []struct {
		err  *fault.Error
		want string
	}{
		{fault.Retryable(fault.UpstreamError, "peer node-2 went away"), activities.PeerFailedError},
		{fault.New(fault.ChecksumMismatch, "the copy differs"), activities.PeerFailedError},
		{fault.Retryable(fault.DiskFull, "no space"), activities.FailoverError},
	} {
		agent := newFakeAgent(t, "node-1", "pool-1")
		b := newBench(t, false, agent)
		agent.script = []agentclient.Download{{ID: "img-1", State: agentclient.StateFailed, Error: tc.err}}
		j := job("node-1", false)
		j.PeerImageID = "copy-2"
		_, err := b.watch(j)
		if typ, _ := errorType(t, err); typ != tc.want {
			t.Errorf("%s: %v, want %s", tc.err.Code, err, tc.want)
		}
	}
}

// TestPlanDistributionAdoptsCreatesAndRetries: a pool with a READY or live
// image of the source is adopted; an empty one gets a new PENDING image; a
// pool that is gone fails its copy pool_not_found; planned again (a
// retry), a FAILED copy gets a new image, a READY one stays, and a live
// copy of the distribution's own is started again.
func TestPlanDistributionAdoptsCreatesAndRetries(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	ctx := context.Background()
	b.readyCopy("ready-a", "pa", "node-1")
	for _, p := range []string{"pb", "pc"} {
		if err := b.store.CreatePool(ctx, &store.Pool{ID: p, Type: "local"}, []string{"node-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.store.CreateImage(ctx, &store.Image{ID: "live-b", Name: "x", SourceKey: "catalog:x", PoolID: "pb", FileName: "x.qcow2"}); err != nil {
		t.Fatal(err)
	}
	d := &store.Distribution{ID: "d1", SourceKey: "catalog:x", PoolKey: "pa,pb,pc,gone", CatalogID: "x", PoolIDs: store.StringList{"pa", "pb", "pc", "gone"}, MaxParallel: 4}
	if _, _, err := b.store.CreateDistribution(ctx, d); err != nil {
		t.Fatal(err)
	}
	plan := b.plan("d1")
	byPool := map[string]activities.PlannedCopy{}
	for _, c := range plan.Copies {
		byPool[c.PoolID] = c
	}
	if c := byPool["pa"]; c.ImageID != "ready-a" || c.Status != store.StatusReady || !c.Adopted || c.New || c.NodeID != "node-1" {
		t.Errorf("pa: %+v, want the READY image adopted as a source", c)
	}
	if c := byPool["pb"]; c.ImageID != "live-b" || !c.Adopted || c.New {
		t.Errorf("pb: %+v, want the live image adopted (waited for)", c)
	}
	if c := byPool["pc"]; !c.New || c.Adopted || c.Status != store.StatusPending || c.ImageID == "" {
		t.Errorf("pc: %+v, want a new PENDING image", c)
	}
	if c := byPool["gone"]; c.Status != store.StatusFailed || c.Code != fault.PoolNotFound {
		t.Errorf("gone: %+v, want FAILED pool_not_found", c)
	}
	if plan.CatalogID != "x" || plan.Checksum != sum256 {
		t.Errorf("plan source %+v, want catalog x with its checksum", plan)
	}

	// The run ends: pc's copy FAILED; planned again, pc gets a new image.
	pc := byPool["pc"]
	if err := b.store.Transition(ctx, pc.ImageID, store.ToFailed{Code: fault.DiskFull, Message: "full"}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.SaveCopy(ctx, store.DistributionCopy{DistributionID: "d1", PoolID: "pc", ImageID: pc.ImageID, Status: store.StatusFailed, ErrorCode: fault.DiskFull}); err != nil {
		t.Fatal(err)
	}
	again := b.plan("d1")
	for _, c := range again.Copies {
		switch c.PoolID {
		case "pc":
			if !c.New || c.ImageID == pc.ImageID {
				t.Errorf("pc retried: %+v, want a new image", c)
			}
		case "pa":
			if c.ImageID != "ready-a" || c.New {
				t.Errorf("pa retried: %+v, want the READY copy kept", c)
			}
		}
	}
	// A live copy the distribution made itself, left by a run that was
	// terminated, is started again (New), not waited for forever.
	third := b.plan("d1")
	for _, c := range third.Copies {
		if c.PoolID == "pc" && (!c.New || c.Adopted) {
			t.Errorf("pc's own live copy: %+v, want it started again", c)
		}
	}
}

func (b *bench) plan(id string) activities.DistributionPlan {
	b.t.Helper()
	v, err := b.env.ExecuteActivity(b.acts.PlanDistribution, id)
	if err != nil {
		b.t.Fatal(err)
	}
	var p activities.DistributionPlan
	if err := v.Get(&p); err != nil {
		b.t.Fatal(err)
	}
	return p
}
