package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

func (b *bench) checkBuild(id string) (activities.Build, error) {
	b.t.Helper()
	v, err := b.env.ExecuteActivity(b.acts.CheckBuild, id)
	if err != nil {
		return activities.Build{}, err
	}
	var out activities.Build
	if err := v.Get(&out); err != nil {
		b.t.Fatal(err)
	}
	return out, nil
}

// TestCheckBuildAsksConditionallyAndRecordsTheBuild: the first check
// fetches the checksum file and takes the version from the name it lists;
// the next one sends the validators back and a 304 means the same build;
// a new file is a new build; a checksum file gone is checksum_unavailable;
// a paused or deleted subscription is skipped without a fetch.
func TestCheckBuildAsksConditionallyAndRecordsTheBuild(t *testing.T) {
	b := newBench(t, false)
	up := testenv.NewUpstream(t)
	hex1 := strings.Repeat("a1", 32)
	up.AddFile("v.qcow2.CHECKSUM", []byte("SHA256 (V-Cloud-41-1.1.x86_64.qcow2) = "+hex1+"\n"))
	cat, err := catalog.New([]catalog.Entry{{ID: "v", URL: up.FileURL("v.qcow2"), ChecksumURL: up.FileURL("v.qcow2.CHECKSUM"), Format: "qcow2"}})
	if err != nil {
		t.Fatal(err)
	}
	b.acts.Catalog = cat
	ctx := context.Background()
	if err := b.store.CreateSubscription(ctx, &store.Subscription{ID: "s", CatalogID: "v", PoolIDs: store.StringList{"pool-1"}, Every: "1h", Keep: 2}); err != nil {
		t.Fatal(err)
	}

	got, err := b.checkBuild("s")
	if err != nil || got.Checksum != "sha256:"+hex1 || got.Version != "41-1.1" || got.NotModified || got.Keep != 2 {
		t.Fatalf("first check: %+v %v", got, err)
	}
	sub, _ := b.store.Subscription(ctx, "s")
	if sub.SeenVersion != "41-1.1" || sub.ChecksumETag == "" || sub.ChecksumLastModified == "" || sub.LastCheckedAt == nil {
		t.Fatalf("recorded: %+v", sub)
	}
	got, err = b.checkBuild("s")
	if err != nil || !got.NotModified || got.Version != "41-1.1" || got.Checksum != "sha256:"+hex1 || up.NotModified("v.qcow2.CHECKSUM") != 1 {
		t.Fatalf("unchanged check: %+v %v (304s %d)", got, err, up.NotModified("v.qcow2.CHECKSUM"))
	}
	hex2 := strings.Repeat("b2", 32)
	up.AddFile("v.qcow2.CHECKSUM", []byte("SHA256 (V-Cloud-41-1.2.x86_64.qcow2) = "+hex2+"\n"))
	if got, err = b.checkBuild("s"); err != nil || got.NotModified || got.Version != "41-1.2" {
		t.Fatalf("new build: %+v %v", got, err)
	}
	if evs, _ := b.store.SubscriptionEvents(ctx, "s", 10); len(evs) != 2 || evs[0].Kind != store.EventNewBuild || evs[0].Version != "41-1.2" {
		t.Fatalf("events: %+v, want a new_build for each build", evs)
	}

	up.SetFault("v.qcow2.CHECKSUM", testenv.Fault{Status: []int{404, 404, 404}})
	_, err = b.checkBuild("s")
	if typ, nonRetryable := errorType(t, err); typ != fault.ChecksumUnavailable || !nonRetryable {
		t.Fatalf("checksum file gone: %v", err)
	}

	paused := true
	if _, err := b.store.UpdateSubscription(ctx, "s", store.SubscriptionChange{Paused: &paused}); err != nil {
		t.Fatal(err)
	}
	requests := up.Requests("v.qcow2.CHECKSUM")
	if got, err = b.checkBuild("s"); err != nil || got.Skipped != "paused" || up.Requests("v.qcow2.CHECKSUM") != requests {
		t.Fatalf("paused: %+v %v", got, err)
	}
	if got, err = b.checkBuild("gone"); err != nil || got.Skipped != "deleted" {
		t.Fatalf("deleted: %+v %v", got, err)
	}
}

// TestPlanRetentionKeepsTheNewestAndNeverPinnedOrLatest: keep counts the
// READY builds, the newest included; pinned ones do not count and stay;
// the one -latest names stays whatever its age; plain downloads of the
// entry are not the subscription's.
func TestPlanRetentionKeepsTheNewestAndNeverPinnedOrLatest(t *testing.T) {
	b := newBench(t, false)
	ctx := context.Background()
	ready := func(id, version string, pinned bool) {
		key := "catalog:x@sha256:" + version
		if version == "" {
			key = "catalog:x"
		}
		img := &store.Image{ID: id, CatalogID: "x", SourceKey: key, PoolID: "pool-1", FileName: "x-" + id + ".qcow2", Version: version}
		if _, ok, err := b.store.CreateImage(ctx, img); err != nil || !ok {
			t.Fatalf("create %s: %v", id, err)
		}
		if err := b.store.Transition(ctx, id, store.ToReady{NodeID: "n", Path: "/p/" + id}); err != nil {
			t.Fatal(err)
		}
		if pinned {
			if _, err := b.store.SetPinned(ctx, id, true); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond) // ready_at orders them
	}
	ready("v1", "1", false)
	ready("v2", "2", true) // pinned: does not count, never removed
	ready("v3", "3", false)
	ready("v4", "4", false)
	ready("v5", "5", false)
	if err := b.store.SetLatestLink(ctx, store.LatestLink{PoolID: "pool-1", FileName: "x-latest.qcow2", CatalogID: "x", ImageID: "v3"}); err != nil {
		t.Fatal(err)
	}
	v, err := b.env.ExecuteActivity(b.acts.PlanRetention, activities.RetentionRequest{SubscriptionID: "s", PoolID: "pool-1", CatalogID: "x", Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	var rm []activities.Removal
	if err := v.Get(&rm); err != nil {
		t.Fatal(err)
	}
	// v5, v4 kept (keep 2); v3 is -latest's; v2 pinned; the plain img-1 of
	// newBench is not READY and not a build anyway. v1 goes.
	if len(rm) != 1 || rm[0].ImageID != "v1" || rm[0].Version != "1" {
		t.Fatalf("removals = %+v, want only v1", rm)
	}
}

// TestPublishLatestNeedsAnAgentThatLinks: an agent without the link
// feature is not asked; the error says to upgrade it, and nothing is
// recorded as latest.
func TestPublishLatestNeedsAnAgentThatLinks(t *testing.T) {
	old := newFakeAgent(t, "node-old", "pool-1")
	b := newBench(t, false, old)
	ctx := context.Background()
	img := &store.Image{ID: "b1", CatalogID: "x", SourceKey: "catalog:x@" + sum256, PoolID: "pool-1", FileName: "x-1.qcow2", Version: "1"}
	if _, _, err := b.store.CreateImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	_, err := b.env.ExecuteActivity(b.acts.PublishLatest, activities.LatestRequest{SubscriptionID: "s", ImageID: "b1"})
	if typ, _ := errorType(t, err); typ != fault.Conflict || !strings.Contains(err.Error(), "not READY") {
		t.Fatalf("-latest of an image not READY: %v", err)
	}
	if err := b.store.Transition(ctx, "b1", store.ToReady{NodeID: "node-old", Path: "/p/x-1.qcow2", Format: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	_, err = b.env.ExecuteActivity(b.acts.PublishLatest, activities.LatestRequest{SubscriptionID: "s", ImageID: "b1"})
	if typ, _ := errorType(t, err); typ != fault.NodeUnreachable || !strings.Contains(err.Error(), "too old") || !strings.Contains(err.Error(), "x-latest.qcow2") {
		t.Fatalf("an agent without links: %v", err)
	}
	if ids, _ := b.store.LatestImageIDs(ctx); len(ids) != 0 {
		t.Fatalf("latest recorded without a link: %v", ids)
	}
}
