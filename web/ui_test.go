package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quantix/cloudimages/web"
)

// scriptedAPI answers the REST contract's routes with fixed data, so the
// UI's own logic can be checked against states that are slow or awkward to
// reach with the real stack: an offline node, a failover, a token. The
// whole download path is tested against the real stack in stack_test.go.
type scriptedAPI struct {
	token string

	mu    sync.Mutex
	posts []map[string]any
}

func (s *scriptedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		web.Handler().ServeHTTP(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		apiError(w, 401, "unauthorized", "send Authorization: Bearer TOKEN")
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/settings":
		writeJSON(w, 200, map[string]any{"temporal_web_url": "http://temporal.example:8233/", "temporal_namespace": "prod"})
	case r.Method == "GET" && r.URL.Path == "/v1/catalog":
		writeJSON(w, 200, items(
			map[string]any{"id": "cirros-0.6.3", "name": "CirrOS 0.6.3", "os": "cirros", "version": "0.6.3", "arch": "x86_64", "format": "qcow2",
				"checksum_url": "https://download.cirros-cloud.net/0.6.3/SHA256SUMS", "size_bytes": 21692416},
			map[string]any{"id": "tiny", "name": "Tiny <b>pinned</b>", "os": "test", "version": "1", "format": "raw",
				"checksum": "sha256:" + strings.Repeat("ab", 32), "size_bytes": 1048576},
		))
	case r.Method == "GET" && r.URL.Path == "/v1/pools":
		writeJSON(w, 200, items(
			map[string]any{"id": "pool-b", "name": "pool-b", "type": "local", "node_ids": []string{"node-2"}},
			map[string]any{"id": "pool-a", "name": "NFS A", "type": "nfs", "shared": true, "image_format": "raw", "node_ids": []string{"node-1", "node-2"}, "free_bytes": 5e9, "total_bytes": 2e10},
			map[string]any{"id": "pool-c", "name": "pool-c", "type": "local", "node_ids": []string{}},
		))
	case r.Method == "GET" && r.URL.Path == "/v1/nodes":
		writeJSON(w, 200, items(
			map[string]any{"id": "node-1", "name": "node 1", "address": "127.0.0.1:9091", "status": "online", "last_seen_at": time.Now().UTC(), "pools": []string{"pool-a"}},
			map[string]any{"id": "node-2", "name": "node 2", "address": "127.0.0.1:9092", "status": "offline", "pools": []string{"pool-a", "pool-b"}},
		))
	case r.Method == "GET" && r.URL.Path == "/v1/images":
		writeJSON(w, 200, items(failedImage(), failedOverImage(), readyImage()))
	case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/events"):
		w.Header().Set("Content-Type", "text/event-stream")
		img := failedOverImage()
		for i, pct := range []float64{60, 80} {
			img["progress"].(map[string]any)["percent"] = pct
			img["updated_at"] = fmt.Sprintf("2026-01-01T11:00:%02dZ", 11+i) // newer than the list's
			b, _ := json.Marshal(img)
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done() // a live download's stream stays open
	case r.Method == "POST" && r.URL.Path == "/v1/images":
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			apiError(w, 400, "invalid_request", err.Error())
			return
		}
		s.mu.Lock()
		s.posts = append(s.posts, body)
		s.mu.Unlock()
		if u, _ := body["url"].(string); strings.HasPrefix(u, "ftp:") {
			apiError(w, 400, "url_forbidden", "only http and https URLs can be downloaded")
			return
		}
		writeJSON(w, 202, map[string]any{"id": "img-new", "name": "cirros", "status": "PENDING", "pool_id": body["pool_id"],
			"created_at": time.Now().UTC(), "updated_at": time.Now().UTC(), "progress": map[string]any{}})
	default:
		apiError(w, 404, "not_found", "no route "+r.Method+" "+r.URL.Path)
	}
}

func (s *scriptedAPI) posted() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.posts...)
}

func failedImage() map[string]any {
	return map[string]any{"id": "img-1", "name": "gone.qcow2", "status": "FAILED", "pool_id": "pool-a", "node_id": "node-1",
		"workflow_id": "image-img-1", "created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:05Z",
		"progress": map[string]any{"bytes_done": 0, "bytes_total": 0},
		"error":    map[string]any{"code": "upstream_not_found", "message": "GET https://mirror.example/gone.qcow2: 404 Not Found"}}
}

func readyImage() map[string]any {
	return map[string]any{"id": "img-3", "name": "debian-12-genericcloud-amd64-with-a-long-name.qcow2", "status": "READY", "pool_id": "pool-b", "node_id": "node-2",
		"path":     "/srv/pools/pool-b/cloud-images/debian-12-genericcloud-amd64-with-a-long-name-and-more-to-wrap.qcow2",
		"checksum": "sha512:" + strings.Repeat("0123456789abcdef", 8), "size_bytes": 420000000, "unverified": false,
		"format": "qcow2", "virtual_size_bytes": 2147483648, "compression": "xz",
		"source_checksum": "sha512:" + strings.Repeat("0123456789abcdef", 8), "file_checksum": "sha256:" + strings.Repeat("fe", 32),
		"workflow_id": "image-img-3", "created_at": "2026-01-01T09:00:00Z", "updated_at": "2026-01-01T09:05:00Z",
		"credential": "vendor",
		"progress": map[string]any{"bytes_done": 420000000, "bytes_total": 420000000, "percent": 100,
			"mirrors": []map[string]any{{"url": "https://gone.example/debian.qcow2", "bytes": 0}, {"url": "https://mirror-b.example/debian.qcow2", "bytes": 420000000}}},
		"error": nil}
}

func failedOverImage() map[string]any {
	return map[string]any{"id": "img-2", "name": "CirrOS 0.6.3", "catalog_id": "cirros-0.6.3", "status": "DOWNLOADING", "pool_id": "pool-a", "node_id": "node-1",
		"workflow_id": "image-img-2", "created_at": "2026-01-01T11:00:00Z", "updated_at": "2026-01-01T11:00:10Z",
		"progress":  map[string]any{"bytes_done": 13000000, "bytes_total": 21692416, "percent": 59.9, "bytes_per_second": 2500000, "eta_seconds": 4, "attempt": 2, "node_id": "node-1"},
		"failovers": []map[string]any{{"node_id": "node-2", "reason": "node node-2 unreachable for 4s: connection refused", "at": "2026-01-01T11:00:03Z"}},
		"error":     nil}
}

func items(v ...map[string]any) map[string]any { return map[string]any{"items": v} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

func TestUIShowsPoolsFailoversAndErrorsInWords(t *testing.T) {
	api := &scriptedAPI{token: "s3cret"}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := newBrowser(t, 1280, 900)

	// Without the token every call is refused: the page says so and offers the dialog.
	b.run("open the page", 30*time.Second, chromedp.Navigate(srv.URL+"/"))
	b.waitFor("the token banner", `document.querySelector('#banner:not([hidden]) button') !== null`, 10*time.Second)
	if got := b.text("#banner"); !strings.Contains(got, "needs a valid token") {
		t.Fatalf("banner = %q, want the unauthorized sentence", got)
	}
	b.screenshot("01-token-needed")
	b.run("enter the token", 10*time.Second,
		chromedp.Click(chromedp.CSS("#banner button")),
		chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), "s3cret"),
		chromedp.Click(chromedp.CSS(`#token-form button[value="save"]`)))
	b.waitFor("the catalog", `document.querySelectorAll('#catalog-list .card').length === 2`, 10*time.Second)
	b.waitFor("the banner to go", `document.getElementById('banner').hidden`, 10*time.Second)

	// The first usable pool is preselected; the others say why they are not.
	pool := eval[string](b, `document.getElementById('pool').value`)
	if pool != "pool-a" {
		t.Errorf("preselected pool = %q, want pool-a (pool-b's only node is offline)", pool)
	}
	if got := eval[string](b, `document.querySelector('#pool option[value="pool-a"]').textContent`); got != "NFS A (raw)" {
		t.Errorf("pool-a's option = %q, want it labelled raw (its images are converted)", got)
	}
	disabled := eval[[]string](b, `[...document.querySelectorAll('#pool option:disabled')].map(o => o.textContent)`)
	if len(disabled) != 2 || !strings.Contains(disabled[0], "node-2 offline") || !strings.Contains(disabled[1], "no node is assigned") {
		t.Errorf("disabled pools = %q, want pool-b (node-2 offline) and pool-c (no node assigned)", disabled)
	}
	if got := b.text(`[data-entry="tiny"] h3`); got != "Tiny <b>pinned</b>" {
		t.Errorf("entry name = %q: names must show as text, not markup", got)
	}
	if got := b.text(`[data-entry="tiny"] dl`); !strings.Contains(got, "pinned sha256") {
		t.Errorf("pinned entry shows %q, want “pinned sha256”", got)
	}
	if got := b.text(`[data-entry="cirros-0.6.3"] dl`); !strings.Contains(got, "from the vendor (SHA256SUMS)") || !strings.Contains(got, "21.7 MB") {
		t.Errorf("vendor entry shows %q, want its size and checksum file", got)
	}
	b.screenshot("02-catalog")
	checkKeyboardReach(t, b, []string{"skip", "nav:catalog", "nav:images", "nav:nodes", "token-open", "pool",
		"download:cirros-0.6.3", "download:tiny", "custom-url", "custom-name", "custom-checksum", "custom-submit"})

	b.run("download CirrOS", 10*time.Second, chromedp.Click(chromedp.CSS(`button[data-download="cirros-0.6.3"]`)))
	b.waitFor("the start message", `document.getElementById('catalog-status').textContent.includes('download started into pool-a')`, 10*time.Second)
	if p := api.posted(); len(p) != 1 || p[0]["catalog_id"] != "cirros-0.6.3" || p[0]["pool_id"] != "pool-a" {
		t.Errorf("POST /v1/images bodies = %v, want one with catalog_id cirros-0.6.3 and pool_id pool-a", p)
	}

	b.run("submit a forbidden URL", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("#custom-url"), "ftp://mirror.example/x.qcow2"),
		chromedp.Click(chromedp.ID("#custom-submit")))
	b.waitFor("the URL error", `document.getElementById('custom-status').textContent.includes('This URL is not allowed')`, 10*time.Second)
	if got := b.text("#custom-status"); !strings.Contains(got, "only http and https URLs can be downloaded") {
		t.Errorf("custom form error = %q, want the server's message under the sentence", got)
	}
	b.screenshot("03-catalog-url-error")

	b.run("open Images", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#images"]`)))
	b.waitFor("the live snapshot", `(document.querySelector('[data-image="img-2"] .numbers') || {}).textContent?.startsWith('80.0%')`, 10*time.Second)
	if got := b.text(`[data-image="img-2"] .failovers`); !strings.Contains(got, "node-2 unreachable → continued on node-1") {
		t.Errorf("failovers = %q, want “node-2 unreachable → continued on node-1”", got)
	}
	if got := b.text(`[data-image="img-3"] .mirrors`); !strings.Contains(got, "gone.example 0 B") || !strings.Contains(got, "mirror-b.example 420.0 MB") {
		t.Errorf("mirrors line = %q, want each mirror's host and the bytes it served", got)
	}
	if got := b.text(`[data-image="img-3"] .meta.sub`); !strings.Contains(got, "with credential vendor") {
		t.Errorf("source line = %q, want the credential's name", got)
	}
	if got := b.text(`[data-image="img-1"] [role="alert"]`); !strings.Contains(got, "The file is not at that URL") || !strings.Contains(got, "404 Not Found") {
		t.Errorf("FAILED image error = %q, want the sentence for upstream_not_found and the message", got)
	}
	href := eval[string](b, `document.querySelector('[data-image="img-2"] a[target]').href`)
	if want := "http://temporal.example:8233/namespaces/prod/workflows/image-img-2"; href != want {
		t.Errorf("Temporal Web link = %q, want %q", href, want)
	}
	buttons := eval[[]string](b, `[...document.querySelectorAll('[data-image] button:not([hidden])')].map(b => b.closest('[data-image]').dataset.image + ':' + b.textContent)`)
	if strings.Join(buttons, ",") != "img-2:Cancel,img-1:Delete,img-3:Delete" {
		t.Errorf("visible buttons = %v, want Cancel on the live image and Delete on the failed one", buttons)
	}
	if got := b.text(`[data-image="img-3"]`); !strings.Contains(got, "420.0 MB · verified sha512:0123") || !strings.Contains(got, "At /srv/pools/pool-b/cloud-images/") {
		t.Errorf("READY image reads %q, want its size, verified checksum and path", got)
	}
	wantFile := "qcow2 disk, 2.15 GB virtual · downloaded xz-compressed · source sha512:0123456789abcdef"
	if got := b.text(`[data-image="img-3"] .file`); !strings.HasPrefix(got, wantFile) || !strings.HasSuffix(got, "file sha256:"+strings.Repeat("fe", 32)) {
		t.Errorf("READY image's file line reads %q, want %q… and the file's checksum", got, wantFile)
	}
	if got := eval[bool](b, `document.querySelector('[data-image="img-2"] .file').hidden`); !got {
		t.Errorf("a DOWNLOADING image shows a file line; want it hidden until READY")
	}
	b.screenshot("04-images")
	visible := `[...document.querySelectorAll('#images-list > li:not([hidden])')].map(li => li.dataset.image).join(',')`
	for _, c := range []struct{ status, pool, want string }{
		{"live", "", "img-2"}, {"ended", "", "img-1"}, {"READY", "", "img-3"}, {"", "pool-b", "img-3"}, {"", "pool-c", ""}, {"", "", "img-2,img-1,img-3"},
	} {
		b.choose("filter-status", c.status)
		b.choose("filter-pool", c.pool)
		if got := eval[string](b, visible); got != c.want {
			t.Errorf("filter %q in %q shows %q, want %q", c.status, c.pool, got, c.want)
		}
		if note := !eval[bool](b, `document.getElementById('images-filtered').hidden`); note != (c.want == "") {
			t.Errorf("filter %q in %q: “no image matches” shown = %v, want %v", c.status, c.pool, note, c.want == "")
		}
	}

	b.run("open Nodes and pools", 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="#nodes"]`)))
	b.waitFor("the pools table", `document.querySelectorAll('#pools-table tbody tr').length === 3`, 10*time.Second)
	if got := b.text(`[data-pool="pool-a"]`); !strings.Contains(got, "5.00 GB of 20.0 GB") || !strings.Contains(got, "images as raw") {
		t.Errorf("pool-a row = %q, want its free space and its image format", got)
	}
	b.screenshot("05-nodes")

	// A narrow window: everything still there, nothing wider than the screen.
	b.run("narrow the window", 10*time.Second, chromedp.EmulateViewport(390, 844))
	for _, section := range []string{"catalog", "images", "nodes"} {
		b.run("show "+section, 10*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`location.hash = "#`+section+`"`)(ctx, t)
			return err
		}))
		b.waitFor(section+" filled", `document.querySelector('#`+section+` li, #`+section+` tbody tr') !== null`, 10*time.Second)
		if eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`) {
			t.Errorf("%s is wider than a 390px window", section)
		}
		b.screenshot("06-narrow-" + section)
	}
}

// checkKeyboardReach tabs through the page from the skip link and checks that
// every control in want gets the focus, in that order, with a visible
// focus ring.
func checkKeyboardReach(t *testing.T, b *browser, want []string) {
	t.Helper()
	b.run("focus the top", 5*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](`document.querySelector('.skip').focus()`)(ctx, tg)
		return err
	}))
	got := []string{"skip"}
	for range 2 * len(want) {
		b.run("press Tab", 5*time.Second, chromedp.KeyEvent("\t"))
		name := eval[string](b, `(e => e.dataset.download ? 'download:' + e.dataset.download
			: e.closest('nav') ? 'nav:' + e.dataset.section
			: e.classList.contains('skip') ? 'skip' : e.id || e.tagName)(document.activeElement)`)
		if name == "BODY" || name == got[0] {
			break // past the last control
		}
		got = append(got, name)
		if ring := eval[string](b, `getComputedStyle(document.activeElement).outlineStyle`); ring == "none" {
			t.Errorf("%s has the focus but no visible focus ring", name)
		}
	}
	i := 0
	for _, name := range got {
		if i < len(want) && name == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("tabbing reached %v; want %v in that order (missing from %q on)", got, want, want[i])
	}
}
