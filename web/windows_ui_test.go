package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quantix/cloudimages/web"
)

// windowedAPI answers with a pool that has transfer windows and a download
// paused until its next one.
func windowedAPI(until time.Time) http.Handler {
	waiting := map[string]any{"id": "img-w", "name": "Night image", "status": "PENDING", "pool_id": "night", "node_id": "node-1",
		"workflow_id": "image-img-w", "created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:05Z",
		"progress": map[string]any{"bytes_done": 4000000, "bytes_total": 16000000, "percent": 25, "attempt": 1, "node_id": "node-1",
			"waiting_until": until.UTC().Format(time.RFC3339), "message": "waiting for a transfer window (22:00-06:00, Europe/Berlin) until …"},
		"error": nil}
	// Not started yet: its pool's only node is down.
	nodeWait := map[string]any{"id": "img-n", "name": "Solo image", "status": "PENDING", "pool_id": "night",
		"workflow_id": "image-img-n", "created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:05Z",
		"progress": map[string]any{"bytes_done": 0, "bytes_total": 0, "percent": 0, "attempt": 0,
			"waiting_until": until.UTC().Format(time.RFC3339), "message": `waiting for a node of pool "night" until … refused now: node-1: health check failed`},
		"error": nil}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !strings.HasPrefix(r.URL.Path, "/v1/"):
			web.Handler().ServeHTTP(w, r)
		case r.URL.Path == "/v1/pools":
			writeJSON(w, 200, items(map[string]any{"id": "night", "name": "night", "type": "local", "node_ids": []string{"node-1"},
				"transfer_windows": []string{"22:00-06:00", "12:00-13:00"}, "time_zone": "Europe/Berlin"}))
		case r.URL.Path == "/v1/nodes":
			writeJSON(w, 200, items(map[string]any{"id": "node-1", "name": "node-1", "address": "127.0.0.1:9091", "status": "online", "pools": []string{"night"}}))
		case r.URL.Path == "/v1/images":
			writeJSON(w, 200, items(waiting, nodeWait))
		case strings.HasSuffix(r.URL.Path, "/events"):
			w.Header().Set("Content-Type", "text/event-stream")
			img := waiting
			if strings.Contains(r.URL.Path, "img-n") {
				img = nodeWait
			}
			b, _ := json.Marshal(img)
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case r.URL.Path == "/v1/catalog":
			writeJSON(w, 200, items())
		default:
			apiError(w, 404, "not_found", "no route "+r.Method+" "+r.URL.Path)
		}
	})
}

func TestUIShowsTheWaitForATransferWindowAndThePoolsWindows(t *testing.T) {
	until := time.Now().Add(2 * time.Hour).Truncate(time.Minute)
	srv := httptest.NewServer(windowedAPI(until))
	t.Cleanup(srv.Close)
	b := newBrowser(t, 1280, 900)
	b.run("open Images", 30*time.Second, chromedp.Navigate(srv.URL+"/#images"))
	b.waitFor("the waiting image", `(document.querySelector('[data-image="img-w"] .numbers') || {}).textContent?.includes('Waiting for transfer window')`, 10*time.Second)
	got := b.text(`[data-image="img-w"] .numbers`)
	// The page shows the browser's local time; the test's browser runs in this process's zone.
	hm := until.Local().Format("15:04")
	if until.Local().YearDay() != time.Now().YearDay() {
		hm = "" // tomorrow: the date comes first, in the browser's format
	}
	if !strings.Contains(got, "Waiting for transfer window until ") || !strings.Contains(got, hm) || !strings.Contains(got, "paused at 4.00 MB of 16.0 MB") {
		t.Errorf("waiting image reads %q, want “Waiting for transfer window until %s · paused at 4.00 MB of 16.0 MB”", got, hm)
	}
	if title := eval[string](b, `document.querySelector('[data-image="img-w"] .numbers').title`); !strings.Contains(title, "22:00-06:00, Europe/Berlin") {
		t.Errorf("the waiting line's title = %q, want the workflow's message", title)
	}
	b.screenshot("windows-01-waiting")
	b.waitFor("the image waiting for a node", `(document.querySelector('[data-image="img-n"] .numbers') || {}).textContent?.includes('Waiting for a node until ')`, 10*time.Second)
	if title := eval[string](b, `document.querySelector('[data-image="img-n"] .numbers').title`); !strings.Contains(title, "refused now: node-1") {
		t.Errorf("the node wait's title = %q, want the workflow's message", title)
	}

	b.run("open Nodes and pools", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#nodes"]`)))
	b.waitFor("the pools table", `document.querySelector('[data-pool="night"]') !== null`, 10*time.Second)
	if got := b.text(`[data-pool="night"]`); !strings.Contains(got, "transfers only 22:00-06:00, 12:00-13:00 (Europe/Berlin)") {
		t.Errorf("pool row = %q, want its transfer windows and zone", got)
	}
	b.screenshot("windows-02-pool")
}
