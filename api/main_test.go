package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

// One Temporal dev server for the whole test binary: starting one takes
// seconds, and workflow ids are unique per image, so tests do not meet.
var (
	temporalAddr string
	temporalC    client.Client
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	cli := os.Getenv(testenv.TemporalCLIEnv)
	if cli == "" {
		cli = filepath.Join("..", "bin", "temporal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cli, ClientOptions: &client.Options{Namespace: "default"},
		LogLevel: "error", ExtraArgs: launch.SearchAttributeArgs(), Stdout: os.Stderr, Stderr: os.Stderr,
	})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start Temporal dev server from %s (run `make tools`): %v\n", cli, err)
		return 1
	}
	defer srv.Stop()
	temporalAddr = srv.FrontendHostPort()
	temporalC = srv.Client()
	return m.Run()
}

// env is an API in-process on a real store, against the dev server.
type env struct {
	t     *testing.T
	store *store.Store
	srv   *api.Server
	http  *httptest.Server
	token string
}

type envOption func(*api.Deps)

func withToken(tok string) envOption { return func(d *api.Deps) { d.Options.APIToken = tok } }

func withOptions(f func(*api.Options)) envOption { return func(d *api.Deps) { f(&d.Options) } }

func withTemporal(c client.Client) envOption { return func(d *api.Deps) { d.Temporal = c } }

func newEnv(t *testing.T, dbURL string, opts ...envOption) *env {
	t.Helper()
	st, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	deps := api.Deps{Store: st, Catalog: cat, Temporal: temporalC,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Options: api.Options{TemporalAddress: temporalAddr, EventInterval: 100 * time.Millisecond,
			TemporalTimeout: 10 * time.Second, Version: "test"}}
	for _, o := range opts {
		o(&deps)
	}
	srv, err := api.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		ts.CloseClientConnections()
		ts.Close()
	})
	return &env{t: t, store: st, srv: srv, http: ts, token: deps.Options.APIToken}
}

// testWriter sends the API's logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// response is an answer of the API.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", r.status, err, r.body)
	}
}

// errCode returns the code of an error answer, checking its shape.
func (r response) errCode(t *testing.T) string {
	t.Helper()
	var b struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	r.json(t, &b)
	if b.Error == nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("answer %d is not {\"error\": {code, message}}: %s", r.status, r.body)
	}
	return b.Error.Code
}

func (e *env) do(method, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// must does a request and fails the test unless the status is want.
func (e *env) must(want int, method, path string, body any, out any) response {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		r.json(e.t, out)
	}
	return r
}

// image is the contract's Image, as tests read it.
type image struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	CatalogID  string `json:"catalog_id"`
	SourceURL  string `json:"source_url"`
	PoolID     string `json:"pool_id"`
	NodeID     string `json:"node_id"`
	FileName   string `json:"file_name"`
	Path       string `json:"path"`
	Status     string `json:"status"`
	SizeBytes  int64  `json:"size_bytes"`
	Checksum   string `json:"checksum"`
	Unverified bool   `json:"unverified"`
	Progress   struct {
		BytesDone      int64   `json:"bytes_done"`
		BytesTotal     int64   `json:"bytes_total"`
		Percent        float64 `json:"percent"`
		BytesPerSecond float64 `json:"bytes_per_second"`
		ETASeconds     *int64  `json:"eta_seconds"`
		Attempt        int     `json:"attempt"`
		NodeID         string  `json:"node_id"`
		// Set while the download waits for a transfer window.
		WaitingUntil *time.Time `json:"waiting_until"`
		Message      string     `json:"message"`
	} `json:"progress"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	WorkflowID string     `json:"workflow_id"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ReadyAt    *time.Time `json:"ready_at"`
}

// seed registers a node (at addr) and a pool with a unique id assigned to
// it, and returns the pool id.
func (e *env) seed(poolType, addr string) (poolID, nodeID string) {
	e.t.Helper()
	nodeID = "node-" + randSuffix()
	e.must(http.StatusCreated, "POST", "/v1/nodes", map[string]any{"id": nodeID, "address": addr}, nil)
	poolID = "pool-" + randSuffix()
	e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": poolID, "type": poolType, "node_ids": []string{nodeID}}, nil)
	return poolID, nodeID
}

var suffixes = make(chan int, 1)

func init() { suffixes <- 0 }

// randSuffix is unique within the test binary and across its runs.
func randSuffix() string {
	n := <-suffixes
	suffixes <- n + 1
	return fmt.Sprintf("%x%02d", time.Now().UnixNano()%0xffffff, n%100)
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// forEachDB runs f on SQLite and PostgreSQL.
func forEachDB(t *testing.T, f func(t *testing.T, dbURL string)) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) { f(t, db.URL) })
	}
}

func testenvSQLite(t *testing.T) string { return testenv.SQLite(t) }
