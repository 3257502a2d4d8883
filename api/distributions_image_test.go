package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

// seedImage puts an image of an upload into pool on node, in status.
func (e *env) seedImage(pool, node, status string) string {
	e.t.Helper()
	ctx := context.Background()
	id := "img-" + randSuffix()
	img := &store.Image{ID: id, Name: "disk.qcow2", SourceKey: "upload:" + id, Source: store.SourceUpload, PoolID: pool, FileName: id + ".qcow2"}
	if _, _, err := e.store.CreateImage(ctx, img); err != nil {
		e.t.Fatal(err)
	}
	var to store.Transition
	switch status {
	case store.StatusPending:
		return id
	case store.StatusDownloading:
		to = store.ToDownloading{NodeID: node, Attempt: 1}
	case store.StatusReady:
		to = store.ToReady{NodeID: node, Path: "/pool/" + id, SizeBytes: 10, Checksum: sum64, FileChecksum: sum64}
	}
	if err := e.store.Transition(ctx, id, to); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// TestDistributionOfAnImageNeedsAReadyImageAndOneSource: image_id with
// another source is 400, an unknown image 404, one not READY 409 saying
// its status and to wait for it; none leaves a distribution behind.
func TestDistributionOfAnImageNeedsAReadyImageAndOneSource(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	pool, node := e.seed("local", "127.0.0.1:1")
	ready := e.seedImage(pool, node, store.StatusReady)
	moving := e.seedImage(pool, node, store.StatusDownloading)
	for _, tc := range []struct {
		what   string
		body   map[string]any
		status int
		code   string
		says   string
	}{
		{"image and url", map[string]any{"image_id": ready, "url": "https://mirror.example/x.qcow2", "checksum": sum64, "name": "x", "all_pools": true}, 400, "invalid_request", "one source"},
		{"image and catalog", map[string]any{"image_id": ready, "catalog_id": "cirros-0.6.3", "all_pools": true}, 400, "invalid_request", "one source"},
		{"image and checksum", map[string]any{"image_id": ready, "checksum": sum64, "all_pools": true}, 400, "invalid_request", "leave out"},
		{"unknown image", map[string]any{"image_id": "nope", "all_pools": true}, 404, "not_found", "does not exist"},
		{"image not READY", map[string]any{"image_id": moving, "all_pools": true}, 409, "conflict", "is DOWNLOADING"},
		{"bad image id", map[string]any{"image_id": "../x", "all_pools": true}, 400, "invalid_request", "image_id"},
	} {
		r := e.do("POST", "/v1/distributions", tc.body)
		if r.status != tc.status || r.errCode(t) != tc.code || !strings.Contains(string(r.body), tc.says) {
			t.Errorf("%s: %d %s, want %d %s saying %q", tc.what, r.status, r.body, tc.status, tc.code, tc.says)
		}
	}
	r := e.do("POST", "/v1/distributions", map[string]any{"image_id": moving, "all_pools": true})
	if !strings.Contains(string(r.body), "cloudimages images wait "+moving) {
		t.Errorf("not READY: %s, want it to say how to wait for the image", r.body)
	}
	var list struct{ Items []api.Distribution }
	e.must(200, "GET", "/v1/distributions", nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("refused requests left distributions: %+v", list.Items)
	}
}

// TestDistributionOfAnImageIsIdempotentAndShowsTheImage runs against the
// real dev server with no worker: the workflow starts and stays running.
func TestDistributionOfAnImageIsIdempotentAndShowsTheImage(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		p1, n1 := e.seed("local", "127.0.0.1:1")
		p2, _ := e.seed("local", "127.0.0.1:1")
		img := e.seedImage(p1, n1, store.StatusReady)
		var d api.Distribution
		e.must(202, "POST", "/v1/distributions", map[string]any{"image_id": img, "pool_ids": []string{p1, p2}, "max_parallel": 2}, &d)
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
		want := api.DistributionSource{ImageID: img, Name: "disk.qcow2", Checksum: sum64}
		if d.Status != "RUNNING" || d.Source != want || d.Checksum != sum64 || d.MaxParallel != 2 {
			t.Fatalf("created %+v, want RUNNING from %+v with the image's file checksum", d, want)
		}
		var again api.Distribution
		e.must(200, "POST", "/v1/distributions", map[string]any{"image_id": img, "pool_ids": []string{p2, p1}}, &again)
		if again.ID != d.ID {
			t.Fatalf("posted again: %s, want %s", again.ID, d.ID)
		}
		// The same pools from a URL, or the image into other pools, are
		// other distributions.
		var other api.Distribution
		e.must(202, "POST", "/v1/distributions", map[string]any{"image_id": img, "pool_ids": []string{p2}}, &other)
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), other.WorkflowID, "", "test over") })
		if other.ID == d.ID {
			t.Fatal("the image into another pool set answered with the first distribution")
		}
	})
}
