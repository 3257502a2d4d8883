package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// upload adds a READY uploaded image in a pool of its own on node.
func (b *bench) upload(id, poolID, nodeID string) {
	b.t.Helper()
	b.readyIn(&store.Image{ID: id, Name: "disk.qcow2", SourceKey: "upload:" + id, Source: store.SourceUpload, PoolID: poolID, FileName: "disk.qcow2"}, nodeID)
}

// TestPlanDistributionOfAnImageAdoptsItsPoolAndCopiesItsFileName: the
// image's pool is its READY copy (adopted, source "upload"); every other
// pool gets a PENDING image of the same source and file name; the plan
// names the image and its node and no mirror. The image deleted, the
// plan fails not_found.
func TestPlanDistributionOfAnImageAdoptsItsPoolAndCopiesItsFileName(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	ctx := context.Background()
	b.upload("up-1", "pa", "node-1")
	if err := b.store.CreatePool(ctx, &store.Pool{ID: "pb", Type: "local"}, []string{"node-1"}); err != nil {
		t.Fatal(err)
	}
	d := &store.Distribution{ID: "d1", SourceKey: store.ImageSourceKey("up-1"), PoolKey: "pa,pb", SourceImageID: "up-1", Name: "disk.qcow2",
		Checksum: fileSum, PoolIDs: store.StringList{"pa", "pb"}, MaxParallel: 4}
	if _, _, err := b.store.CreateDistribution(ctx, d); err != nil {
		t.Fatal(err)
	}
	plan := b.plan("d1")
	if plan.SourceImageID != "up-1" || plan.SourceNodeID != "node-1" || plan.URL != "" || plan.CatalogID != "" {
		t.Fatalf("plan %+v, want image up-1 on node-1 as its source and no mirror", plan)
	}
	byPool := map[string]activities.PlannedCopy{}
	for _, c := range plan.Copies {
		byPool[c.PoolID] = c
	}
	if c := byPool["pa"]; c.ImageID != "up-1" || c.Status != store.StatusReady || !c.Adopted || c.New {
		t.Errorf("pa: %+v, want the uploaded image adopted READY", c)
	}
	got, err := b.store.Distribution(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got.Copies {
		if c.PoolID == "pa" && (c.Source != store.SourceUpload || c.Status != store.StatusReady) {
			t.Errorf("pa's copy recorded %+v, want READY from its upload", c)
		}
	}
	c := byPool["pb"]
	if !c.New || c.Status != store.StatusPending {
		t.Fatalf("pb: %+v, want a new PENDING image", c)
	}
	img, err := b.store.Image(ctx, c.ImageID)
	if err != nil {
		t.Fatal(err)
	}
	if img.FileName != "disk.qcow2" || img.SourceKey != "upload:up-1" || img.Checksum != sum256 {
		t.Errorf("pb's image %+v, want file disk.qcow2 of source upload:up-1 with the upload's checksum", img)
	}

	// The source is a copy's first step too (ResolveImageSource).
	v, err := b.env.ExecuteActivity(b.acts.ResolveImageSource, "up-1")
	if err != nil {
		t.Fatal(err)
	}
	var src struct{ FileName, SourceKey, Checksum, URL string }
	if err := v.Get(&src); err != nil || src.FileName != "disk.qcow2" || src.SourceKey != "upload:up-1" || src.Checksum != sum256 || src.URL != "" {
		t.Fatalf("source %+v (%v), want the upload's file, key and checksum, no URL", src, err)
	}

	// Deleted: nothing to copy, and no mirror to read instead.
	if err := b.store.DeleteImage(ctx, "up-1"); err != nil {
		t.Fatal(err)
	}
	_, err = b.env.ExecuteActivity(b.acts.PlanDistribution, "d1")
	if typ, _ := errorType(t, err); typ != fault.NotFound || !strings.Contains(err.Error(), "up-1") {
		t.Fatalf("plan of a deleted image: %v, want not_found naming it", err)
	}
}

// TestStartOnNodeOfAnImageCopyNamesTheOfflineSourceAndNeverTheMirror: the
// copy's only source is on an offline node: the start fails naming that
// node; an agent without peer_copy is no node for a copy with no URL.
func TestStartOnNodeOfAnImageCopyNamesTheOfflineSourceAndNeverTheMirror(t *testing.T) {
	target := newFakeAgent(t, "node-1", "pool-1")
	src := newFakeAgent(t, "node-2", "p2")
	b := newBench(t, false, target, src)
	b.upload("up-1", "p2", "node-2")
	j := job("node-1", false)
	j.URL, j.Peers, j.NodeFeatures = "", []string{"up-1"}, []string{agentclient.FeaturePeerCopy}
	if err := b.store.RecordNodeHealth(context.Background(), "node-2", store.NodeHealth{Online: false, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err := b.env.ExecuteActivity(b.acts.StartOnNode, j)
	if typ, _ := errorType(t, err); typ != activities.PeerFailedError || !strings.Contains(err.Error(), "image up-1 is on node node-2, which is offline") {
		t.Fatalf("the only source offline: %v, want %s naming node-2", err, activities.PeerFailedError)
	}
	j.NodeFeatures = nil
	_, err = b.env.ExecuteActivity(b.acts.StartOnNode, j)
	if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "cannot copy from peers") {
		t.Fatalf("an agent without peer_copy: %v, want a failover saying it cannot copy from peers", err)
	}
	if n := len(target.started()); n != 0 {
		t.Fatalf("the target was sent %d requests, want none", n)
	}
}
