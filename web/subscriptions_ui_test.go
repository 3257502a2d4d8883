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

// subscriptionsAPI answers the routes the Subscriptions page uses with
// fixed data and records what the page sends.
type subscriptionsAPI struct {
	mu      sync.Mutex
	paused  bool
	patches []map[string]any
	checks  int
}

func (s *subscriptionsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		web.Handler().ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/subscriptions":
		next := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
		writeJSON(w, 200, items(
			map[string]any{"id": "s1", "catalog_id": "fedora-41", "pool_ids": []string{"pool-a", "pool-b"}, "every": "6h", "keep": 3,
				"paused": s.paused, "next_check_at": next, "last_checked_at": time.Now().Add(-time.Hour).UTC(), "current_version": "41-1.4",
				"last_error": "", "checking": false},
			map[string]any{"id": "s2", "catalog_id": "rocky-9", "pool_ids": []string{"pool-a"}, "every": "1h", "keep": 2,
				"paused": false, "next_check_at": next, "current_version": "", "checking": true,
				"last_error": "pool pool-a: build 9.5-20241118.0 did not become READY: checksum of the bytes differs"},
		))
	case r.Method == "PATCH" && r.URL.Path == "/v1/subscriptions/s1":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.patches = append(s.patches, body)
		s.paused, _ = body["paused"].(bool)
		writeJSON(w, 200, map[string]any{"id": "s1", "paused": s.paused})
	case r.Method == "POST" && r.URL.Path == "/v1/subscriptions/s1/check":
		s.checks++
		apiError(w, 409, "conflict", `a check of subscription "s1" is running (workflow refresh-s1-…): wait for it to end`)
	case r.Method == "GET" && r.URL.Path == "/v1/images":
		writeJSON(w, 200, items(map[string]any{"id": "img-9", "name": "Fedora 41", "catalog_id": "fedora-41", "status": "READY",
			"pool_id": "pool-a", "node_id": "node-1", "file_name": "fedora-41-41-1.4.qcow2", "version": "41-1.4", "latest": true, "pinned": true,
			"created_at": "2026-01-01T09:00:00Z", "updated_at": "2026-01-01T09:05:00Z", "size_bytes": 1000, "checksum": "sha256:" + strings.Repeat("ab", 32),
			"progress": map[string]any{"bytes_done": 1000, "bytes_total": 1000, "percent": 100}, "error": nil}))
	case r.Method == "GET" && r.URL.Path == "/v1/catalog":
		writeJSON(w, 200, items(map[string]any{"id": "fedora-41", "name": "Fedora 41", "format": "qcow2", "checksum_url": "https://x/CHECKSUM"}))
	case r.Method == "GET" && r.URL.Path == "/v1/pools":
		writeJSON(w, 200, items(map[string]any{"id": "pool-a", "name": "pool-a", "type": "local", "node_ids": []string{"node-1"}}))
	case r.Method == "GET" && r.URL.Path == "/v1/nodes":
		writeJSON(w, 200, items(map[string]any{"id": "node-1", "address": "127.0.0.1:9091", "status": "online", "pools": []string{"pool-a"}}))
	default:
		apiError(w, 404, "not_found", "no route "+r.Method+" "+r.URL.Path)
	}
}

// TestUISubscriptionsPageShowsChecksAndPausesAndExplains409: the page
// lists each subscription's entry, pools, next check, current version and
// last error; Pause sends PATCH {"paused": true} and the row then says
// paused; "Check now" while a check runs shows the API's conflict in
// words; a running check's button is disabled; an image shows its version
// and that -latest names it.
func TestUISubscriptionsPageShowsChecksAndPausesAndExplains409(t *testing.T) {
	api := &subscriptionsAPI{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := newBrowser(t, 1280, 900)

	b.run("open the subscriptions page", 30*time.Second, chromedp.Navigate(srv.URL+"/#subscriptions"))
	b.waitFor("two subscriptions", `document.querySelectorAll('#subscriptions-table tbody tr[data-subscription]').length === 2`, 10*time.Second)
	row := b.text(`[data-subscription="s1"]`)
	for _, want := range []string{"fedora-41", "pool-a, pool-b", "every 6h, keep 3", "41-1.4", "none"} {
		if !strings.Contains(row, want) {
			t.Errorf("row s1 = %q, want %q in it", row, want)
		}
	}
	if got := b.text(`[data-subscription="s2"]`); !strings.Contains(got, "checksum of the bytes differs") || !strings.Contains(got, "none yet") {
		t.Errorf("row s2 = %q, want its last error and no version yet", got)
	}
	if !eval[bool](b, `document.querySelector('[data-subscription="s2"] [data-action="check"]').disabled`) {
		t.Error("Check now is enabled on a subscription whose check runs")
	}
	b.screenshot("subscriptions")

	b.run("check s1 now", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-subscription="s1"] [data-action="check"]`)))
	b.waitFor("the conflict in words", `document.querySelector('[data-subscription="s1"] .status-line.error') !== null`, 10*time.Second)
	if got := b.text(`[data-subscription="s1"] .status-line.error`); !strings.Contains(got, "is running") {
		t.Errorf("after a 409 the row says %q, want the API's message", got)
	}

	b.run("pause s1", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-subscription="s1"] [data-action="pause"]`)))
	b.waitFor("s1 paused", `(document.querySelector('[data-subscription="s1"]') || {}).textContent.includes('paused')`, 10*time.Second)
	api.mu.Lock()
	patches, checks := append([]map[string]any(nil), api.patches...), api.checks
	api.mu.Unlock()
	if len(patches) != 1 || patches[0]["paused"] != true || checks != 1 {
		t.Fatalf("the page sent patches %v and %d checks, want one {paused: true} and one check", patches, checks)
	}
	if got := b.text(`[data-subscription="s1"] [data-action="resume"]`); got != "Resume" {
		t.Errorf("a paused subscription offers %q, want Resume", got)
	}

	b.run("open the images page", 10*time.Second, chromedp.Navigate(srv.URL+"/#images"))
	b.waitFor("the image", `document.querySelector('[data-image="img-9"] .badge.latest') !== null`, 10*time.Second)
	if got := b.text(`[data-image="img-9"]`); !strings.Contains(got, "version 41-1.4") || !strings.Contains(got, "pinned") {
		t.Errorf("image card = %q, want its version and pinned", got)
	}
}
