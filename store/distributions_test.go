package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

func TestOneDistributionPerSourceAndPoolSetUnderConcurrentInserts(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			ctx := context.Background()
			var wg sync.WaitGroup
			var mu sync.Mutex
			created, ids := 0, map[string]bool{}
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := &store.Distribution{ID: fmt.Sprintf("d-%02d", i), SourceKey: "catalog:cirros", PoolKey: "p1,p2",
						CatalogID: "cirros", PoolIDs: store.StringList{"p1", "p2"}, MaxParallel: 4}
					got, isNew, err := s.CreateDistribution(ctx, d)
					if err != nil {
						t.Errorf("CreateDistribution: %v", err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if isNew {
						created++
					}
					ids[got.ID] = true
				}()
			}
			wg.Wait()
			if created != 1 || len(ids) != 1 {
				t.Fatalf("created %d distributions, callers saw %v; want exactly one", created, ids)
			}
			// Another pool set of the same source is another distribution.
			_, isNew, err := s.CreateDistribution(ctx, &store.Distribution{ID: "other", SourceKey: "catalog:cirros", PoolKey: "p1"})
			if err != nil || !isNew {
				t.Fatalf("a distribution into another pool set: created=%v err=%v, want a new one", isNew, err)
			}
		})
	}
}

func TestDistributionCopiesRetryAndCancel(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			ctx := context.Background()
			d := &store.Distribution{ID: "d1", SourceKey: "catalog:cirros", PoolKey: "p1,p2", PoolIDs: store.StringList{"p1", "p2"}}
			if _, _, err := s.CreateDistribution(ctx, d); err != nil {
				t.Fatal(err)
			}
			for _, c := range []store.DistributionCopy{
				{DistributionID: "d1", PoolID: "p1", ImageID: "i1", Status: store.StatusReady, Source: store.SourceMirror, BytesFromMirror: 100},
				{DistributionID: "d1", PoolID: "p2", ImageID: "i2", Status: store.StatusFailed, Source: store.CopySourceNode("n1"), BytesFromPeers: 40, ErrorCode: "disk_full"},
			} {
				if err := s.SaveCopy(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			// Saved again: replaced, not added.
			if err := s.SaveCopy(ctx, store.DistributionCopy{DistributionID: "d1", PoolID: "p1", ImageID: "i1", Status: store.StatusReady,
				Source: store.SourceMirror, BytesFromMirror: 120}); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveCopy(ctx, store.DistributionCopy{DistributionID: "nope", PoolID: "p1", Status: store.StatusPending}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a copy of an unknown distribution: %v, want ErrNotFound", err)
			}
			got, err := s.Distribution(ctx, "d1")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Copies) != 2 || got.MirrorBytes() != 120 || got.Copies[1].ErrorCode != "disk_full" {
				t.Fatalf("copies %+v (mirror bytes %d), want p1 with 120 mirror bytes and p2 disk_full", got.Copies, got.MirrorBytes())
			}
			if ok, err := s.RetryDistribution(ctx, "d1"); err != nil || ok {
				t.Fatalf("retry of a RUNNING distribution: %v %v, want refused", ok, err)
			}
			if err := s.EndDistribution(ctx, "d1", store.DistributionPartial, "pool p2: disk_full"); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.RetryDistribution(ctx, "d1"); err != nil || !ok {
				t.Fatalf("retry of a PARTIAL distribution: %v %v, want it RUNNING again", ok, err)
			}
			if ok, _ := s.RetryDistribution(ctx, "d1"); ok {
				t.Fatal("a second retry won too: only one may")
			}
			// Cancelled, it no longer holds its source and pool set.
			if err := s.EndDistribution(ctx, "d1", store.DistributionCancelled, ""); err != nil {
				t.Fatal(err)
			}
			again, isNew, err := s.CreateDistribution(ctx, &store.Distribution{ID: "d2", SourceKey: "catalog:cirros", PoolKey: "p1,p2"})
			if err != nil || !isNew || again.ID != "d2" {
				t.Fatalf("after a cancel: %+v created=%v err=%v, want a new distribution", again, isNew, err)
			}
			if err := s.EndDistribution(ctx, "nope", store.DistributionReady, ""); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("end of an unknown distribution: %v, want ErrNotFound", err)
			}
			list, err := s.Distributions(ctx)
			if err != nil || len(list) != 2 || len(list[1].Copies) != 2 {
				t.Fatalf("Distributions: %d (%v), want 2 with d1's copies", len(list), err)
			}
		})
	}
}
