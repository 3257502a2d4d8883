package api_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

func TestAuth(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		t.Run("on", func(t *testing.T) {
			e := newEnv(t, dbURL, withToken("s3cret"))
			cases := []struct {
				name, header string
				status       int
			}{
				{"no header", "", 401},
				{"wrong token", "Bearer nope", 401},
				{"longer wrong token", "Bearer s3cret-and-more", 401},
				{"basic scheme", "Basic czNjcmV0", 401},
				{"right token", "Bearer s3cret", 200},
				{"scheme in lower case", "bearer s3cret", 200},
			}
			for _, path := range []string{"/v1/nodes", "/v1/images", "/v1/catalog", "/v1/openapi.json", "/v1/nope"} {
				for _, c := range cases {
					r := e.do("GET", path, nil, "Authorization", c.header)
					want := c.status
					if path == "/v1/nope" && want == 200 {
						want = 404
					}
					if r.status != want {
						t.Errorf("%s with %s: %d, want %d", path, c.name, r.status, want)
						continue
					}
					if want == 401 {
						if code := r.errCode(t); code != "unauthorized" {
							t.Errorf("%s with %s: code %q", path, c.name, code)
						}
						if r.header.Get("WWW-Authenticate") == "" {
							t.Errorf("401 without WWW-Authenticate")
						}
					}
				}
			}
			if r := e.do("POST", "/v1/nodes", map[string]any{"address": "h:1"}, "Authorization", ""); r.status != 401 {
				t.Errorf("POST without a token: %d", r.status)
			}
			for _, open := range []string{"/healthz", "/metrics", "/"} {
				if r := e.do("GET", open, nil, "Authorization", ""); r.status != 200 {
					t.Errorf("GET %s without a token: %d, want 200 (open)", open, r.status)
				}
			}
			var st map[string]any
			e.must(200, "GET", "/v1/settings", nil, &st)
			if st["auth_required"] != true {
				t.Errorf("settings: %v", st)
			}
		})
		t.Run("off", func(t *testing.T) {
			e := newEnv(t, dbURL)
			if r := e.do("GET", "/v1/nodes", nil); r.status != 200 {
				t.Errorf("no token configured: %d", r.status)
			}
			if r := e.do("GET", "/v1/nodes", nil, "Authorization", "Bearer whatever"); r.status != 200 {
				t.Errorf("no token configured, one sent: %d", r.status)
			}
		})
	})
}

func TestTemporalDownAnswers503Quickly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	down, err := client.NewLazyClient(client.Options{HostPort: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	e := newEnv(t, testenv.SQLite(t), withTemporal(down), withOptions(func(o *api.Options) {
		o.TemporalTimeout = time.Second
		o.TemporalAddress = addr
	}))
	pool, _ := e.seed("nfs", "127.0.0.1:1")

	start := time.Now()
	r := e.do("POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool})
	took := time.Since(start)
	if r.status != http.StatusServiceUnavailable || r.errCode(t) != "temporal_unavailable" {
		t.Fatalf("POST with Temporal down: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), addr) {
		t.Errorf("the message does not say where Temporal was expected: %s", r.body)
	}
	if took > 8*time.Second {
		t.Errorf("POST took %s with a 1s Temporal timeout", took)
	}
	// No orphan: the record of the download that could not start is gone.
	var imgs struct{ Items []image }
	e.must(200, "GET", "/v1/images", nil, &imgs)
	if len(imgs.Items) != 0 {
		t.Errorf("images after a failed start: %+v", imgs.Items)
	}
	// Reads still work; health says Temporal is down but stays 200.
	e.must(200, "GET", "/v1/pools/"+pool, nil, nil)
	var hz struct {
		Status   string
		Database struct{ OK bool }
		Temporal struct {
			OK    bool
			Error string
		}
	}
	e.must(200, "GET", "/healthz", nil, &hz)
	if hz.Status != "degraded" || !hz.Database.OK || hz.Temporal.OK || hz.Temporal.Error == "" {
		t.Errorf("healthz with Temporal down: %+v", hz)
	}
	// Cancelling a live download needs Temporal too.
	if _, _, err := e.store.CreateImage(t.Context(), &store.Image{ID: "live", SourceKey: "k", PoolID: pool, FileName: "f"}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("DELETE", "/v1/images/live", nil); r.status != 503 || r.errCode(t) != "temporal_unavailable" {
		t.Errorf("DELETE live image with Temporal down: %d %s", r.status, r.body)
	}
	m := e.must(200, "GET", "/metrics", nil, nil)
	if !strings.Contains(string(m.body), `cloudimages_api_image_requests_total{outcome="temporal_unavailable"} 1`) {
		t.Errorf("metrics do not count the failed start")
	}
}

func TestHealthzIs503WhenTheDatabaseIsGone(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	e.store.Close()
	var hz struct {
		Status   string
		Database struct {
			OK    bool
			Error string
		}
	}
	r := e.must(503, "GET", "/healthz", nil, &hz)
	if hz.Database.OK || hz.Database.Error == "" {
		t.Errorf("healthz: %s", r.body)
	}
	// Other routes fail as 500 internal, with the request id to look up.
	r = e.do("GET", "/v1/nodes", nil)
	if r.status != 500 || r.errCode(t) != "internal" || !strings.Contains(string(r.body), r.header.Get("X-Request-Id")) {
		t.Errorf("GET /v1/nodes with the database gone: %d %s", r.status, r.body)
	}
}

func TestPanicIsInternalAndTheServerStaysUp(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	e.srv.AddPanicRouteForTest()
	for range 3 {
		r := e.do("GET", "/v1/panic", nil)
		if r.status != 500 || r.errCode(t) != "internal" {
			t.Fatalf("panic: %d %s", r.status, r.body)
		}
		if strings.Contains(string(r.body), "boom") {
			t.Errorf("the panic's value leaked to the client: %s", r.body)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("no request id")
		}
	}
	e.must(200, "GET", "/v1/nodes", nil, nil)
}

// TestOpenAPIDocumentsEveryRoute checks the hand-written document against
// the routes, both ways.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	data, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	served := e.must(200, "GET", "/v1/openapi.json", nil, nil)
	if string(served.body) != string(data) {
		t.Errorf("GET /v1/openapi.json does not serve openapi.json")
	}
	param := regexp.MustCompile(`:([a-z_]+)`)
	routes := map[string]bool{}
	for _, r := range e.srv.RoutesForTest() {
		method, path, _ := strings.Cut(r, " ")
		routes[strings.ToLower(method)+" "+param.ReplaceAllString(path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			documented[method+" "+path] = true
		}
	}
	for r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for d := range documented {
		if !routes[d] {
			t.Errorf("openapi.json documents %s, which is not a route", d)
		}
	}
	if len(routes) < 18 {
		keys := make([]string, 0, len(routes))
		for k := range routes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Errorf("only %d routes: %v", len(routes), keys)
	}
}
