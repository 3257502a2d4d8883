package activities_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// fakeAgent is a real HTTP server that speaks the node agent's API with
// scripted answers, for the activities' unit tests. (The integration tests
// run the real agent.)
type fakeAgent struct {
	srv *httptest.Server
	// credential is what the worker, whose cluster secret is "node-token",
	// must send this node; nothing else is accepted.
	credential string

	mu     sync.Mutex
	health agentclient.Health
	down   bool // answer every request with 502
	frozen bool // answer nothing: hold every request until the caller gives up
	drops  int  // close the connection of this many polls of a download without an answer
	// firstFrozen is when the first request reached the frozen agent.
	firstFrozen time.Time
	script      []agentclient.Download // answers to GET /v1/downloads/{id}, the last one repeated
	starts      []agentclient.DownloadRequest
	cancel      []string
	files       []string // pool/file of DELETE /v1/pools/{pool}/files/{file}

	getCount  int // GETs of a download
	waitCount int // of which asked to wait (?wait=)

	polled   chan struct{} // closed when a download is first answered
	pollOnce sync.Once
}

func newFakeAgent(t *testing.T, nodeID string, pools ...string) *fakeAgent {
	f := &fakeAgent{credential: nodeauth.Credential("node-token", nodeID), health: agentclient.Health{NodeID: nodeID}, polled: make(chan struct{})}
	for _, p := range pools {
		f.health.Pools = append(f.health.Pools, agentclient.PoolHealth{ID: p, FreeBytes: 1 << 30, TotalBytes: 2 << 30})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgent) address() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeAgent) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.frozen {
		if f.firstFrozen.IsZero() {
			f.firstFrozen = time.Now()
		}
		f.mu.Unlock()
		<-r.Context().Done() // like a SIGSTOPped process: the kernel accepted, nobody answers
		return
	}
	defer f.mu.Unlock()
	if f.down {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.credential {
		writeJSON(w, http.StatusUnauthorized, fault.Body{Error: fault.New(fault.Unauthorized, "wrong token")})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/health":
		writeJSON(w, http.StatusOK, f.health)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/downloads":
		var req agentclient.DownloadRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.starts = append(f.starts, req)
		writeJSON(w, http.StatusAccepted, agentclient.Download{ID: req.ID, PoolID: req.PoolID, FileName: req.FileName,
			Path: "/pool/cloud-images/" + req.FileName, State: agentclient.StateRunning})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/downloads/") && f.drops > 0:
		f.drops--
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/downloads/"):
		if len(f.script) == 0 {
			writeJSON(w, http.StatusNotFound, fault.Body{Error: fault.New(fault.NotFound, "no such download")})
			return
		}
		f.getCount++
		if r.URL.Query().Has("wait") {
			f.waitCount++
		}
		d := f.script[0]
		if len(f.script) > 1 {
			f.script = f.script[1:]
		}
		writeJSON(w, http.StatusOK, d)
		f.pollOnce.Do(func() { close(f.polled) })
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/downloads/"):
		f.cancel = append(f.cancel, strings.TrimPrefix(r.URL.Path, "/v1/downloads/"))
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/pools/"):
		f.files = append(f.files, strings.Replace(strings.TrimPrefix(r.URL.Path, "/v1/pools/"), "/files/", "/", 1))
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAgent) set(fn func(f *fakeAgent)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAgent) gets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getCount
}

func (f *fakeAgent) waits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waitCount
}

func (f *fakeAgent) startCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAgent) started() []agentclient.DownloadRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]agentclient.DownloadRequest(nil), f.starts...)
}

func (f *fakeAgent) cancelled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cancel...)
}

func (f *fakeAgent) removedFiles() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.files...)
}

// crash stops the agent as kill -9 would: its port is closed, so every
// connection to it is refused.
func (f *fakeAgent) crash() { f.srv.Close() }
