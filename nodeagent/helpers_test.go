package nodeagent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const testToken = "test-token"

// harness is an agent served in-process over real HTTP, with real pools
// on disk and a real upstream mirror.
type harness struct {
	t      *testing.T
	srv    *nodeagent.Server
	http   *httptest.Server
	client *agentclient.Client
	pool   string // the directory of pool "pool-1"
	up     *testenv.Upstream
}

// newHarness starts an agent with fast retries; change lets a test adjust
// its configuration before it starts.
func newHarness(t *testing.T, change func(*nodeagent.Config)) *harness {
	t.Helper()
	cfg := nodeagent.Config{
		NodeID:               "node-t",
		Token:                testToken,
		Pools:                []nodeagent.PoolDir{{ID: "pool-1", Dir: t.TempDir()}},
		MaxConcurrent:        4,
		AllowPrivateNetworks: true,
		RetryBackoff:         10 * time.Millisecond,
		MaxAttempts:          3,
		StallTimeout:         5 * time.Second,
		Logger:               slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:              "test",
	}
	if change != nil {
		change(&cfg)
	}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatalf("nodeagent.New: %v", err)
	}
	h := &harness{t: t, srv: srv, pool: cfg.Pools[0].Dir, up: testenv.NewUpstream(t)}
	h.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		h.http.Close()
	})
	h.client = agentclient.New(h.http.URL, testToken)
	return h
}

// testWriter sends logs to the test's log, shown on failure or with -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// start posts a request and fails the test unless it is accepted.
func (h *harness) start(req agentclient.DownloadRequest) agentclient.Download {
	h.t.Helper()
	if req.PoolID == "" {
		req.PoolID = "pool-1"
	}
	d, err := h.client.StartDownload(ctx(h.t), req)
	if err != nil {
		h.t.Fatalf("start %s: %v", req.ID, err)
	}
	return d
}

// wait polls a download until cond holds (30s at most).
func wait(t *testing.T, c *agentclient.Client, id string, what string, cond func(agentclient.Download) bool) agentclient.Download {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := c.Download(ctx(t), id)
		if err == nil && cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("download %s: not %s after 30s: %+v (err %v)", id, what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFinished(t *testing.T, c *agentclient.Client, id string) agentclient.Download {
	t.Helper()
	return wait(t, c, id, "finished", agentclient.Download.Finished)
}

// assertPublished checks the file at the download's path: there, the
// right bytes, reported with the right checksum, nothing left in flight.
func assertPublished(t *testing.T, d agentclient.Download, poolDir string, data []byte, sum string) {
	t.Helper()
	if d.State != agentclient.StateCompleted || d.Error != nil {
		t.Fatalf("download %s: state %s, error %v; want completed", d.ID, d.State, d.Error)
	}
	want := filepath.Join(poolDir, agentclient.ImagesDir, d.FileName)
	if d.Path != want {
		t.Errorf("path %s, want %s", d.Path, want)
	}
	got, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("published file: %v", err)
	}
	if testenv.SHA256(got) != testenv.SHA256(data) {
		t.Fatalf("published file has other bytes (%d bytes, want %d)", len(got), len(data))
	}
	if d.Checksum != sum {
		t.Errorf("checksum %s, want %s", d.Checksum, sum)
	}
	if d.BytesDone != int64(len(data)) || d.BytesTotal != int64(len(data)) {
		t.Errorf("bytes %d/%d, want %d", d.BytesDone, d.BytesTotal, len(data))
	}
	assertNoPartial(t, poolDir, d.ID)
}

// assertFailed checks the error and that neither the file nor any partial
// data is left.
func assertFailed(t *testing.T, d agentclient.Download, poolDir, code string, retryable bool) {
	t.Helper()
	if d.State != agentclient.StateFailed || d.Error == nil {
		t.Fatalf("download %s: state %s, error %v; want failed with %s", d.ID, d.State, d.Error, code)
	}
	if d.Error.Code != code || d.Error.Retryable != retryable {
		t.Fatalf("download %s: error %+v; want code %s retryable %v", d.ID, *d.Error, code, retryable)
	}
	if _, err := os.Lstat(filepath.Join(poolDir, agentclient.ImagesDir, d.FileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed download left %s (%v)", d.FileName, err)
	}
	assertNoPartial(t, poolDir, d.ID)
}

// assertNoPartial fails if a download's data in flight (with id "", any
// download's) is left in the pool.
func assertNoPartial(t *testing.T, poolDir, id string) {
	t.Helper()
	if id == "" {
		id = "*"
	}
	parts, _ := filepath.Glob(filepath.Join(poolDir, agentclient.ImagesDir, ".downloads", id+"~*.part"))
	if len(parts) > 0 {
		t.Errorf("partial data left: %v", parts)
	}
}

// faultCode returns the contract code of an error from the client.
func faultCode(err error) string {
	if fe, ok := fault.As(err); ok {
		return fe.Code
	}
	return "no fault: " + errorString(err)
}

func errorString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// rawRequest sends a request with any method, token and body, for the
// tests of what the Go client never sends.
func rawRequest(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newServer serves an agent over real HTTP until the test ends.
func newServer(t testing.TB, srv *nodeagent.Server) string {
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}
