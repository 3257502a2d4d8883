package web_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/web"
)

// contractCodes are the error codes the REST API and the workflow report:
// every string constant of package fault, read from its source so that a
// new code without a sentence in errors.js fails the test below.
func contractCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../fault/fault.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, spec := range g.Specs {
				for _, v := range spec.(*ast.ValueSpec).Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						code, _ := strconv.Unquote(lit.Value)
						codes = append(codes, code)
					}
				}
			}
		}
	}
	// A parse that finds nothing must not pass the test vacuously.
	for _, known := range []string{fault.InvalidRequest, fault.Internal, fault.UnprocessableRequest} {
		if !slices.Contains(codes, known) {
			t.Fatalf("read codes %v from fault/fault.go, missing %q", codes, known)
		}
	}
	return codes
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
	for _, name := range []string{"app.js", "api.js", "images.js", "catalog.js", "nodes.js", "errors.js", "dom.js", "upload.js"} {
		if !seen[name] {
			t.Errorf("%s is not reached from index.html", name)
		}
	}
	// The vendored tus-js-client, a classic script the page loads before its modules.
	const tusJS = "vendor/tus-js-client-4.3.1.min.js"
	if !strings.Contains(page, `<script src="`+tusJS+`">`) {
		t.Errorf("index.html does not load %s", tusJS)
	}
	if res, body := get(t, srv, "/"+tusJS); res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || !strings.Contains(body, ".tus=") {
		t.Errorf("GET /%s: %d %q", tusJS, res.StatusCode, res.Header.Get("Content-Type"))
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
	for _, code := range contractCodes(t) {
		if !strings.Contains(js, "\n  "+code+": '") {
			t.Errorf("errors.js has no sentence for %q", code)
		}
	}
}

// TestEveryStatusHasAColourAndTheNodeSideOnesWords keeps the UI in step
// with the image statuses: each has its badge colour, and the statuses a
// node spends time in after the bytes are all there say what it does.
func TestEveryStatusHasAColourAndTheNodeSideOnesWords(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	_, css := get(t, srv, "/app.css")
	_, js := get(t, srv, "/images.js")
	for _, st := range []string{imagestate.Pending, imagestate.Downloading, imagestate.Verifying, imagestate.Converting,
		imagestate.Ready, imagestate.Failed, imagestate.Cancelled} {
		if !strings.Contains(css, ".status-"+strings.ToLower(st)) {
			t.Errorf("app.css has no colour for %s (.status-%s)", st, strings.ToLower(st))
		}
	}
	for _, st := range []string{imagestate.Verifying, imagestate.Converting} {
		if !strings.Contains(js, "img.status === '"+st+"'") {
			t.Errorf("images.js says nothing while an image is %s", st)
		}
	}
}

// Every signature status an image can have is shown in words, and one the
// page does not know falls back to "not checked", never to verified.
func TestEverySignatureStatusIsShownInWords(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	_, js := get(t, srv, "/images.js")
	for _, st := range []string{signature.Verified, signature.Unsigned, signature.NotChecked} {
		if !strings.Contains(js, "\n  "+st+": ['") {
			t.Errorf("images.js does not show the signature status %q", st)
		}
	}
	if !strings.Contains(js, "signatures[img.signature] || signatures.not_checked") {
		t.Errorf("images.js does not fall back to “not checked” for a status it does not know")
	}
}
