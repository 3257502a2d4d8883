package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

// TestEachBuildIsItsOwnImage: builds of one catalog entry coexist in a
// pool (their own source keys and files), the one-live-image rule still
// holds per build, the newest one answers for the entry, and retention
// sees only the builds (never a plain "catalog:ID" download).
func TestEachBuildIsItsOwnImage(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			plain := &store.Image{ID: "plain", CatalogID: "x_1", SourceKey: "catalog:x_1", PoolID: "p1", FileName: "x_1.qcow2"}
			b1 := &store.Image{ID: "b1", CatalogID: "x_1", SourceKey: "catalog:x_1@sha256:11", PoolID: "p1", FileName: "x_1-1.qcow2", Version: "1"}
			b2 := &store.Image{ID: "b2", CatalogID: "x_1", SourceKey: "catalog:x_1@sha256:22", PoolID: "p1", FileName: "x_1-2.qcow2", Version: "2"}
			// Another entry whose id a careless LIKE would match (_ is a wildcard).
			other := &store.Image{ID: "o", CatalogID: "xa1", SourceKey: "catalog:xa1@sha256:33", PoolID: "p1", FileName: "xa1-3.qcow2"}
			for _, img := range []*store.Image{plain, b1, b2, other} {
				if _, ok, err := s.CreateImage(ctx, img); err != nil || !ok {
					t.Fatalf("create %s: created=%v err=%v", img.ID, ok, err)
				}
				time.Sleep(5 * time.Millisecond) // distinct created_at
			}
			if got, ok, err := s.CreateImage(ctx, &store.Image{ID: "b2-again", CatalogID: "x_1", SourceKey: b2.SourceKey, PoolID: "p1", FileName: b2.FileName}); err != nil || ok || got.ID != "b2" {
				t.Fatalf("the same build again: got %q created=%v err=%v, want b2", got.ID, ok, err)
			}
			if got, ok, err := s.NewestCatalogImage(ctx, "p1", "x_1"); err != nil || !ok || got.ID != "b2" {
				t.Fatalf("newest image of x_1: %q %v %v, want b2", got.ID, ok, err)
			}
			for _, id := range []string{"b1", "b2", "plain", "o"} {
				if err := s.Transition(ctx, id, store.ToReady{NodeID: "node-1", Path: "/p/" + id}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			vs, err := s.ReadyVersions(ctx, "p1", "x_1")
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 2 || vs[0].ID != "b2" || vs[1].ID != "b1" {
				t.Fatalf("ready versions: %v, want b2 then b1", ids(vs))
			}
			if got, _ := s.SetPinned(ctx, "b1", true); !got.Pinned {
				t.Fatal("b1 not pinned")
			}
			if err := s.SetLatestLink(ctx, store.LatestLink{PoolID: "p1", FileName: "x_1-latest.qcow2", CatalogID: "x_1", ImageID: "b1"}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetLatestLink(ctx, store.LatestLink{PoolID: "p1", FileName: "x_1-latest.qcow2", CatalogID: "x_1", ImageID: "b2"}); err != nil {
				t.Fatal(err)
			}
			if latest, err := s.LatestImageIDs(ctx); err != nil || len(latest) != 1 || !latest["b2"] {
				t.Fatalf("latest: %v %v, want only b2", latest, err)
			}
		})
	}
}

func ids(imgs []store.Image) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, i.ID)
	}
	return out
}

// TestSubscriptionsOfOneEntryDoNotShareAPool: two subscriptions would
// fight over a pool's versions and its -latest file.
func TestSubscriptionsOfOneEntryDoNotShareAPool(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			a := &store.Subscription{ID: "a", CatalogID: "x", PoolIDs: store.StringList{"p1"}, Every: "6h", Keep: 2}
			if err := s.CreateSubscription(ctx, a); err != nil {
				t.Fatal(err)
			}
			b := &store.Subscription{ID: "b", CatalogID: "x", PoolIDs: store.StringList{"p2", "p1"}, Every: "1h", Keep: 1}
			if err := s.CreateSubscription(ctx, b); !errors.Is(err, store.ErrExists) {
				t.Fatalf("a second subscription of x in p1: %v, want ErrExists", err)
			}
			if err := s.CreateSubscription(ctx, &store.Subscription{ID: "c", CatalogID: "y", PoolIDs: store.StringList{"p1"}, Every: "1h", Keep: 1}); err != nil {
				t.Fatalf("another entry in p1: %v", err)
			}
			paused := true
			got, err := s.UpdateSubscription(ctx, "a", store.SubscriptionChange{Paused: &paused})
			if err != nil || !got.Paused || got.Keep != 2 || len(got.PoolIDs) != 1 {
				t.Fatalf("paused: %+v %v", got, err)
			}
			if err := s.RecordCheck(ctx, "a", store.CheckedBuild{Checksum: "sha256:aa", Version: "v1", ETag: `"e"`}); err != nil {
				t.Fatal(err)
			}
			if err := s.AddSubscriptionEvent(ctx, store.SubscriptionEvent{SubscriptionID: "a", Kind: store.EventNewBuild, Message: "m"}); err != nil {
				t.Fatal(err)
			}
			if err := s.AddSubscriptionEvent(ctx, store.SubscriptionEvent{SubscriptionID: "gone", Kind: store.EventError}); err != nil {
				t.Fatalf("an event of a deleted subscription is dropped, not an error: %v", err)
			}
			if evs, err := s.SubscriptionEvents(ctx, "a", 10); err != nil || len(evs) != 1 {
				t.Fatalf("events: %v %v", evs, err)
			}
			if err := s.DeleteSubscription(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Subscription(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("deleted: %v", err)
			}
		})
	}
}
