package api_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/quantix/cloudimages/store"
)

func TestFiftyConcurrentPostsStartOneDownload(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, _ := e.seed("nfs", "127.0.0.1:1")
		body := map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}
		const n = 50
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		ids := map[string]bool{}
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := e.do("POST", "/v1/images", body)
				var img image
				if r.status == http.StatusOK || r.status == http.StatusAccepted {
					r.json(t, &img)
				}
				mu.Lock()
				defer mu.Unlock()
				statuses[r.status]++
				if img.ID != "" {
					ids[img.ID] = true
				} else {
					t.Errorf("POST: %d %s", r.status, r.body)
				}
			}()
		}
		close(start)
		wg.Wait()
		if statuses[http.StatusAccepted] != 1 || statuses[http.StatusOK] != n-1 || len(ids) != 1 {
			t.Fatalf("statuses %v, image ids %v: want one 202, %d 200 and one image", statuses, ids, n-1)
		}
		imgs, err := e.store.Images(context.Background(), store.ImageFilter{PoolID: pool})
		if err != nil || len(imgs) != 1 {
			t.Fatalf("images in the pool: %d (%v), want 1", len(imgs), err)
		}
		var id string
		for k := range ids {
			id = k
		}
		checkWorkflowRunning(t, id, pool)
		// Exactly one workflow carries the pool: the list is eventually
		// consistent, so wait for it to show one, then check it is not two.
		count := func() int64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := temporalC.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: `PoolId="` + pool + `"`})
			if err != nil {
				t.Fatalf("count workflows: %v", err)
			}
			return resp.GetCount()
		}
		eventually(t, 10*time.Second, "a workflow with the pool's PoolId shows up", func() bool { return count() >= 1 })
		if c := count(); c != 1 {
			t.Fatalf("%d workflows for pool %s, want 1", c, pool)
		}
	})
}

// TestPostHealsAnImageWhoseStartWasLost: an image recorded without its
// workflow (the API died between the insert and the start) gets its
// workflow from the next identical request, which answers 200 with it.
func TestPostHealsAnImageWhoseStartWasLost(t *testing.T) {
	e := newEnv(t, testenvSQLite(t))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	id := "lost-" + randSuffix()
	lost := &store.Image{ID: id, CatalogID: "cirros-0.6.3", Name: "CirrOS", SourceKey: "catalog:cirros-0.6.3",
		SourceURL: "https://example.com/cirros.img", PoolID: pool, FileName: "cirros-0.6.3.img", WorkflowID: "image-" + id}
	if _, _, err := e.store.CreateImage(context.Background(), lost); err != nil {
		t.Fatal(err)
	}
	var got image
	e.must(http.StatusOK, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}, &got)
	if got.ID != id {
		t.Fatalf("POST answered image %s, want the recorded %s", got.ID, id)
	}
	checkWorkflowRunning(t, id, pool)
}
