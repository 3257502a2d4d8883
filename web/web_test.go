package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/web"
)

// contractCodes are the error codes the REST API and the workflow report.
var contractCodes = []string{
	fault.InvalidRequest, fault.Unauthorized, fault.NotFound, fault.Conflict, fault.PoolNotFound,
	fault.CatalogEntryNotFound, fault.NoNodeAvailable, fault.NodeUnreachable, fault.URLForbidden,
	fault.UpstreamNotFound, fault.UpstreamError, fault.ChecksumMismatch, fault.ChecksumUnavailable,
	fault.NotADiskImage, fault.DiskFull, fault.Cancelled, fault.Internal, fault.TemporalUnavailable,
	fault.PayloadTooLarge, fault.MethodNotAllowed, fault.UnsupportedMediaType, fault.UnprocessableRequest,
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// TestHandlerServesEveryFileThePageLoads follows the page's references
// (stylesheet, scripts, module imports) and checks each one is embedded
// and served with a type the browser accepts for it.
func TestHandlerServesEveryFileThePageLoads(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)

	res, page := get(t, srv, "/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options"} {
		if res.Header.Get(h) == "" {
			t.Errorf("GET /: no %s header", h)
		}
	}

	refs := regexp.MustCompile(`(?:src|href)="([a-z]+\.(?:js|css))"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("index.html references %v, want its stylesheet and script", refs)
	}
	seen := map[string]bool{}
	queue := []string{}
	for _, r := range refs {
		queue = append(queue, r[1])
	}
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		res, body := get(t, srv, "/"+name)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %d", name, res.StatusCode)
			continue
		}
		want := "text/css"
		if strings.HasSuffix(name, ".js") {
			want = "javascript"
		}
		if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, want) {
			t.Errorf("GET /%s: Content-Type %q, want %s", name, ct, want)
		}
		for _, m := range imports.FindAllStringSubmatch(body, -1) {
			queue = append(queue, m[1])
		}
	}
	for _, name := range []string{"app.js", "api.js", "images.js", "catalog.js", "nodes.js", "errors.js", "dom.js"} {
		if !seen[name] {
			t.Errorf("%s is not reached from index.html", name)
		}
	}
	if res, _ := get(t, srv, "/missing.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /missing.js: %d, want 404", res.StatusCode)
	}
}

// TestEveryErrorCodeHasASentence keeps errors.js in step with the
// contract: each code the APIs can answer is explained in words.
func TestEveryErrorCodeHasASentence(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	_, js := get(t, srv, "/errors.js")
	for _, code := range contractCodes {
		if !strings.Contains(js, "\n  "+code+": '") {
			t.Errorf("errors.js has no sentence for %q", code)
		}
	}
}
