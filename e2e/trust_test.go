package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// impostor is a plain HTTP listener registered as a node: it answers like
// an agent and notes every Authorization it is sent.
type impostor struct {
	mu     sync.Mutex
	tokens []string // distinct Authorization values
	starts int      // POST /v1/downloads received
}

func (m *impostor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	if a := r.Header.Get("Authorization"); a != "" && !slices.Contains(m.tokens, a) {
		m.tokens = append(m.tokens, a)
	}
	if r.Method == http.MethodPost && r.URL.Path == "/v1/downloads" {
		m.starts++
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && r.URL.Path == "/v1/health" {
		json.NewEncoder(w).Encode(agentclient.Health{NodeID: "impostor", Version: "x",
			Pools: []agentclient.PoolHealth{{ID: "impostor-pool", FreeBytes: 1 << 40, TotalBytes: 1 << 40}}})
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"error":{"code":"internal","message":"impostor","retryable":true}}`))
}

func (m *impostor) seen() ([]string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.tokens), m.starts
}

// TestRegisteredListenerGetsNoCredentialARealAgentAccepts is the issue's
// test: anyone who can register a node address receives what the API's
// health checks and the worker's node pick send there. That must open
// that address only: every Authorization it received is refused by the
// stack's real agent.
func TestRegisteredListenerGetsNoCredentialARealAgentAccepts(t *testing.T) {
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 1, WorkerArgs: []string{"--no-node-timeout", "5s"}})
	m := &impostor{}
	ln := httptest.NewServer(m)
	t.Cleanup(ln.Close)

	s.API.MustDo(t, http.MethodPost, "/v1/nodes", map[string]any{"id": "impostor", "name": "impostor",
		"address": strings.TrimPrefix(ln.URL, "http://")}, nil, http.StatusCreated)
	s.API.MustDo(t, http.MethodPost, "/v1/pools", map[string]any{"id": "impostor-pool", "name": "impostor-pool",
		"type": "local", "node_ids": []string{"impostor"}}, nil, http.StatusCreated)
	f := addImage(testenv.NewUpstream(t), "lure.qcow2", 1<<20)
	img := download(t, s, f, "impostor-pool")

	// The worker picked the impostor and tried to start the download there.
	eventually(t, time.Minute, "the worker sends the impostor a download", func() bool {
		_, starts := m.seen()
		return starts > 0
	})
	tokens, _ := m.seen()
	if len(tokens) == 0 {
		t.Fatal("the impostor received no Authorization at all: nothing was tested")
	}
	agent := s.Agent("node-1")
	if _, err := agent.Client().Health(t.Context()); err != nil {
		t.Fatalf("the real agent refuses its own credential: %v", err)
	}
	for _, authz := range tokens {
		for _, r := range []struct{ method, path, body string }{
			{http.MethodGet, "/v1/health", ""},
			{http.MethodGet, "/v1/downloads", ""},
			{http.MethodPost, "/v1/downloads", `{"id":"x","url":"http://example.com/x","pool_id":"local-1","file_name":"x.qcow2"}`},
		} {
			req, err := http.NewRequest(r.method, agent.URL()+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", authz)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s at node-1 with what the impostor received (%d chars): %d, want 401", r.method, r.path, len(authz), resp.StatusCode)
			}
		}
	}
	s.API.MustDo(t, http.MethodDelete, "/v1/images/"+img.ID+"?force=true", nil, nil)
}

// TestNodeTokenPrintsTheCredentialTheAgentNeeds: `cloudimages node-token`
// turns the cluster secret into the credential the worker sends a node,
// from a flag, the environment or a file.
func TestNodeTokenPrintsTheCredentialTheAgentNeeds(t *testing.T) {
	bin := testenv.Binary(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("cluster-secret-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"node-token"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node-token %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	fromFlag := run(nil, "--node-id", "node-1", "--node-token", "cluster-secret-from-a-file")
	fromEnv := run([]string{"CLOUDIMAGES_NODE_TOKEN=cluster-secret-from-a-file"}, "--node-id", "node-1")
	fromFile := run(nil, "--node-id", "node-1", "--node-token-file", secretFile)
	other := run(nil, "--node-id", "node-2", "--node-token-file", secretFile)
	if fromFlag != fromEnv || fromFlag != fromFile || fromFlag == other || strings.Contains(fromFlag, "cluster-secret") {
		t.Fatalf("credentials: flag %q env %q file %q node-2 %q", fromFlag, fromEnv, fromFile, other)
	}
	// An agent given that credential in a file is reached by a client
	// holding the same credential.
	credFile := filepath.Join(t.TempDir(), "node-1.token")
	if err := os.WriteFile(credFile, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(bin, "nodeagent", "--node-id", "node-1", "--listen", addr, "--node-token-file", credFile, "--pool", "p="+t.TempDir())
	cmd.Env = append(os.Environ(), "CLOUDIMAGES_NODE_TOKEN=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, 30*time.Second, "the agent with --node-token-file answers its credential", func() bool {
		_, err := agentclient.New(addr, fromFlag).Health(t.Context())
		return err == nil
	})
	if _, err := agentclient.New(addr, other).Health(t.Context()); err == nil {
		t.Error("the agent of node-1 accepts node-2's credential")
	}
	if code, stderr := runBinary(t, bin, []string{"node-token", "--node-token", "x"}, nil); code != 2 || !strings.Contains(stderr, "--node-id is required") {
		t.Errorf("node-token without --node-id: exit %d: %s", code, stderr)
	}
}

// TestDownloadThroughAgentsServingTLS: agents with --tls-cert and
// --tls-key, an API and a worker given their CA with --agent-ca-file; the
// nodes are registered as bare host:port, reached over HTTPS, and a
// download ends READY.
func TestDownloadThroughAgentsServingTLS(t *testing.T) {
	ca := testenv.NewAgentCA(t)
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 1,
		AgentArgs: []string{"--tls-cert", ca.CertFile, "--tls-key", ca.KeyFile},
		AgentTLS:  ca.ClientTLS,
		Env:       []string{"CLOUDIMAGES_AGENT_CA_FILE=" + ca.CAFile},
	})
	f := addImage(testenv.NewUpstream(t), "over-tls.qcow2", 1<<20)
	img := waitStatus(t, s, download(t, s, f, "local-1").ID, "READY", time.Minute)
	checkReadyFile(t, img, f)
	if _, err := agentclient.New(s.Agent("node-1").Address(), s.Agent("node-1").Token()).Health(t.Context()); err == nil {
		t.Error("the TLS agent answers plain HTTP")
	}
}
