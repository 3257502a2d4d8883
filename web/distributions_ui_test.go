package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quantix/cloudimages/web"
)

// distributionsAPI answers the routes the Distributions page uses: one
// distribution whose copies move on every GET, and records what the page
// sends.
type distributionsAPI struct {
	mu      sync.Mutex
	gets    int
	posts   []map[string]any
	deletes int
	images  []map[string]any // GET /v1/images
}

func (s *distributionsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		web.Handler().ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/distributions":
		s.gets++
		done := min(int64(s.gets)*100, 900) // the copy into pool-c moves on
		writeJSON(w, 200, items(map[string]any{"id": "d1", "status": "RUNNING", "source": map[string]any{"catalog_id": "fedora-41"},
			"max_parallel": 4, "mirror_bytes": 1000, "failed_pools": []string{"pool-d"}, "created_at": time.Now().Add(-time.Minute).UTC(),
			"copies": []map[string]any{
				{"pool_id": "pool-a", "image_id": "i-a", "status": "READY", "source": "mirror", "bytes_from_mirror": 1000, "error": nil},
				{"pool_id": "pool-b", "image_id": "i-b", "status": "READY", "source": "node:node-1", "bytes_from_peers": 1000, "error": nil},
				{"pool_id": "pool-c", "image_id": "i-c", "status": "DOWNLOADING", "source": "node:node-2", "error": nil,
					"progress": map[string]any{"bytes_done": done, "bytes_total": 1000, "percent": float64(done) / 10}},
				{"pool_id": "pool-d", "image_id": "i-d", "status": "FAILED", "source": "node:node-1",
					"error": map[string]any{"code": "disk_full", "message": "pool pool-d has no room"}},
				{"pool_id": "pool-e", "image_id": "i-e", "status": "FAILED", "source": "",
					"error": map[string]any{"code": "checksum_unavailable", "message": "no checksum file"}},
				{"pool_id": "pool-f", "image_id": "", "status": "PENDING", "source": "", "error": nil},
			}}))
	case r.Method == "POST" && r.URL.Path == "/v1/distributions":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.posts = append(s.posts, body)
		writeJSON(w, 202, map[string]any{"id": "d2", "status": "RUNNING", "copies": []any{}})
	case r.Method == "DELETE" && r.URL.Path == "/v1/distributions/d1":
		s.deletes++
		writeJSON(w, 202, map[string]any{"id": "d1", "status": "RUNNING", "copies": []any{}})
	case r.Method == "GET" && r.URL.Path == "/v1/catalog":
		writeJSON(w, 200, items(map[string]any{"id": "fedora-41", "name": "Fedora 41", "format": "qcow2"}))
	case r.Method == "GET" && r.URL.Path == "/v1/pools":
		writeJSON(w, 200, items(map[string]any{"id": "pool-a", "name": "pool-a", "type": "local", "node_ids": []string{"node-1"}},
			map[string]any{"id": "pool-b", "name": "pool-b", "type": "local", "node_ids": []string{"node-2"}}))
	case r.Method == "GET" && r.URL.Path == "/v1/images":
		writeJSON(w, 200, items(s.images...))
	case r.Method == "GET" && (r.URL.Path == "/v1/nodes" || r.URL.Path == "/v1/subscriptions"):
		writeJSON(w, 200, items())
	default:
		apiError(w, 404, "not_found", "no route "+r.Method+" "+r.URL.Path)
	}
}

// TestUIDistributionsPageShowsAMatrixWithLiveProgressAndSources: one cell
// per pool with its status and where the copy came from, the running
// copy's bar moving between refreshes, a failed copy's code; the form
// posts the chosen pools and max_parallel, Cancel sends DELETE.
func TestUIDistributionsPageShowsAMatrixWithLiveProgressAndSources(t *testing.T) {
	api := &distributionsAPI{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := newBrowser(t, 1280, 900)

	b.run("open the distributions page", 30*time.Second, chromedp.Navigate(srv.URL+"/#distributions"))
	b.waitFor("the matrix", `document.querySelectorAll('[data-distribution="d1"] td[data-pool]').length === 6`, 10*time.Second)
	for pool, want := range map[string]string{"pool-a": "from the mirror", "pool-b": "from node node-1", "pool-c": "from node node-2", "pool-d": "disk_full"} {
		if got := b.text(`[data-distribution="d1"] td[data-pool="` + pool + `"]`); !strings.Contains(got, want) {
			t.Errorf("cell %s = %q, want %q in it", pool, got, want)
		}
	}
	// A copy that failed before it had a source is not "waiting"; one
	// pending without a source is.
	if got := b.text(`[data-distribution="d1"] td[data-pool="pool-e"]`); strings.Contains(got, "waiting") || !strings.Contains(got, "checksum_unavailable") {
		t.Errorf("cell pool-e (FAILED, no source) = %q, want its code and no waiting", got)
	}
	if got := b.text(`[data-distribution="d1"] td[data-pool="pool-f"]`); !strings.Contains(got, "waiting for a source") {
		t.Errorf("cell pool-f (PENDING, no source) = %q, want waiting for a source", got)
	}
	if got := b.text(`[data-distribution="d1"] .dist-head`); !strings.Contains(got, "2 of 6 pools READY") || !strings.Contains(got, "fedora-41") {
		t.Errorf("head = %q, want the entry and 2 of 6 READY", got)
	}
	first := eval[float64](b, `Number(document.querySelector('td[data-pool="pool-c"] progress').value)`)
	b.waitFor("the bar to move", `Number((document.querySelector('td[data-pool="pool-c"] progress') || {}).value) > `+jsNumber(first), 10*time.Second)
	b.screenshot("distributions")

	b.choose("dist-pools", "pool-b")
	b.run("set max_parallel", 10*time.Second, chromedp.SetValue(chromedp.ID("dist-parallel"), "2"))
	b.run("distribute", 10*time.Second, chromedp.Click(chromedp.ID("dist-submit")))
	b.waitFor("started", `document.getElementById('dist-status').textContent.includes('Started')`, 10*time.Second)
	b.run("cancel d1", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-distribution="d1"] [data-action="cancel"]`)))
	b.waitFor("the cancel sent", `document.querySelector('[data-distribution="d1"] .status-line').textContent === ''`, 10*time.Second)
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.posts) != 1 || api.posts[0]["catalog_id"] != "fedora-41" || api.posts[0]["max_parallel"] != float64(2) {
		t.Fatalf("the page posted %v, want fedora-41 with max_parallel 2", api.posts)
	}
	if pools, _ := api.posts[0]["pool_ids"].([]any); len(pools) != 1 || pools[0] != "pool-b" {
		t.Fatalf("the page posted pools %v, want pool-b", api.posts[0]["pool_ids"])
	}
	if api.deletes != 1 {
		t.Fatalf("the page sent %d DELETEs, want 1", api.deletes)
	}
}

func jsNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// TestUIDistributionOfAReadyImage: the form offers the READY images (an
// upload) as sources beside the catalog entries, and not the ones still
// moving; chosen, it posts image_id and no catalog_id.
func TestUIDistributionOfAReadyImage(t *testing.T) {
	api := &distributionsAPI{images: []map[string]any{
		{"id": "up-1-0000-ready", "name": "golden.qcow2", "pool_id": "pool-a", "status": "READY", "source": "upload"},
		{"id": "up-2-0000-moving", "name": "half.qcow2", "pool_id": "pool-a", "status": "DOWNLOADING", "source": "upload"},
	}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := newBrowser(t, 1280, 900)

	b.run("open the distributions page", 30*time.Second, chromedp.Navigate(srv.URL+"/#distributions"))
	b.waitFor("the READY image among the sources", `!!document.querySelector('#dist-source option[value="image:up-1-0000-ready"]')`, 10*time.Second)
	if n := eval[float64](b, `document.querySelectorAll('#dist-source option[value="image:up-2-0000-moving"]').length`); n != 0 {
		t.Fatal("an image that is not READY is offered as a source")
	}
	if got := b.text(`#dist-source option[value="image:up-1-0000-ready"]`); !strings.Contains(got, "golden.qcow2 in pool-a") {
		t.Errorf("the image's option says %q, want its name and pool", got)
	}
	b.choose("dist-source", "image:up-1-0000-ready")
	b.run("all pools", 10*time.Second, chromedp.Click(chromedp.ID("dist-all")))
	b.run("distribute", 10*time.Second, chromedp.Click(chromedp.ID("dist-submit")))
	b.waitFor("started", `document.getElementById('dist-status').textContent.includes('Started')`, 10*time.Second)
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.posts) != 1 || api.posts[0]["image_id"] != "up-1-0000-ready" || api.posts[0]["catalog_id"] != nil || api.posts[0]["all_pools"] != true {
		t.Fatalf("the page posted %v, want image_id up-1-0000-ready into all pools, no catalog_id", api.posts)
	}
}
