package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

const (
	nodeToken  = "bench-node-token"
	sharedPool = "shared"
)

// agent is one node agent process and the proxy the control plane reaches
// it through: the proxy notes when each start request arrives.
type agent struct {
	id    string
	addr  string // the agent itself
	proxy *agentProxy
	p     *proc
	local string // its own local pool id
}

func (a *agent) client() *agentclient.Client {
	return agentclient.New(a.addr, nodeauth.Credential(nodeToken, a.id))
}

// stack is everything the bench runs: node agents always; the Temporal dev
// server, the worker and the API when a part needs the whole path.
type stack struct {
	dir    string
	bin    string
	agents []*agent

	temporal *testsuite.DevServer
	tclient  client.Client
	worker   *proc
	api      *proc
	apiURL   string
	dbURL    string
	// controlErr says why the control plane is not running, when it is not.
	controlErr error
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startAgents starts n agents node-1..node-n, each with its own local pool
// local-N and the pool "shared" on one common directory.
func (s *stack) startAgents(n, maxConcurrent int) error {
	for i := 1; i <= n; i++ {
		a, err := s.startAgent("node-"+strconv.Itoa(i), s.bin, maxConcurrent)
		if err != nil {
			return err
		}
		s.agents = append(s.agents, a)
	}
	return nil
}

// startAgent starts one agent from bin, with the pools local-{n} (n from
// its id) and "shared", and the proxy in front of it.
func (s *stack) startAgent(id, bin string, maxConcurrent int) (*agent, error) {
	a := &agent{id: id, local: "local-" + strings.TrimPrefix(id, "node-")}
	var err error
	if a.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	localDir := filepath.Join(s.dir, "pools", a.local)
	sharedDir := filepath.Join(s.dir, "pools", sharedPool)
	for _, d := range []string{localDir, sharedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	a.p = newProc(id, filepath.Join(s.dir, "logs", id+".log"), bin, "nodeagent",
		"--node-id", id, "--listen", a.addr, "--node-token", nodeauth.Credential(nodeToken, id),
		"--pool", a.local+"="+localDir, "--pool", sharedPool+"="+sharedDir,
		"--max-concurrent", strconv.Itoa(maxConcurrent), "--allow-private-networks")
	if err := a.p.start(func(ctx context.Context) error { _, err := a.client().Health(ctx); return err }); err != nil {
		return nil, err
	}
	if a.proxy, err = startAgentProxy(a.addr); err != nil {
		a.p.stop()
		return nil, err
	}
	return a, nil
}

// restartAgent starts a stopped agent again on the same port and pools.
func (s *stack) restartAgent(a *agent) error {
	return a.p.start(func(ctx context.Context) error { _, err := a.client().Health(ctx); return err })
}

// startControlPlane starts the Temporal dev server, the worker and the
// API, and registers the agents' nodes and pools.
func (s *stack) startControlPlane(temporalCLI string) error {
	args := []string{}
	for _, name := range []string{"ImageId", "PoolId", "NodeId", "CatalogId", "ImageStatus"} {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logf, err := os.Create(filepath.Join(s.dir, "logs", "temporal.log"))
	if err != nil {
		return err
	}
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  temporalCLI,
		ClientOptions: &client.Options{Namespace: "default", Logger: quietLogger{}},
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        logf,
		Stderr:        logf,
	})
	if err != nil {
		return fmt.Errorf("temporal dev server (%s): %w", temporalCLI, err)
	}
	s.temporal = srv
	s.tclient = srv.Client()
	taddr := srv.FrontendHostPort()

	common := []string{"--temporal-address", taddr, "--database-url", s.dbURL, "--node-token", nodeToken}
	s.worker = newProc("worker", filepath.Join(s.dir, "logs", "worker.log"), s.bin, append([]string{"worker"}, common...)...)
	if err := s.worker.start(logSays(s.worker.logPath, "worker running")); err != nil {
		return err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	s.apiURL = "http://" + apiAddr
	s.api = newProc("api", filepath.Join(s.dir, "logs", "api.log"), s.bin, append([]string{"api", "--listen", apiAddr}, common...)...)
	if err := s.api.start(httpOK(s.apiURL + "/healthz")); err != nil {
		return err
	}
	return s.register()
}

// register tells the API about the nodes (at their proxies) and pools.
func (s *stack) register() error {
	c := newAPIClient(s.apiURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var all []string
	for _, a := range s.agents {
		node := map[string]any{"id": a.id, "name": a.id, "address": a.proxy.addr}
		if _, err := c.do(ctx, http.MethodPost, "/v1/nodes", node, nil); err != nil {
			return err
		}
		pool := map[string]any{"id": a.local, "name": a.local, "type": "local", "shared": false, "node_ids": []string{a.id}}
		if _, err := c.do(ctx, http.MethodPost, "/v1/pools", pool, nil); err != nil {
			return err
		}
		all = append(all, a.id)
	}
	pool := map[string]any{"id": sharedPool, "name": "shared", "type": "nfs", "shared": true, "node_ids": all}
	_, err := c.do(ctx, http.MethodPost, "/v1/pools", pool, nil)
	return err
}

func (s *stack) close() {
	if s.api != nil {
		s.api.stop()
	}
	if s.worker != nil {
		s.worker.stop()
	}
	if s.tclient != nil {
		s.tclient.Close()
	}
	if s.temporal != nil {
		s.temporal.Stop()
	}
	for _, a := range s.agents {
		a.p.stop()
		a.proxy.close()
	}
}

func httpOK(u string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return nil
	}
}

func logSays(path, text string) func(context.Context) error {
	return func(context.Context) error {
		b, _ := os.ReadFile(path)
		if !bytes.Contains(b, []byte(text)) {
			return fmt.Errorf("no %q in %s yet", text, path)
		}
		return nil
	}
}

// agentProxy forwards to one agent and notes when each POST /v1/downloads
// arrives, by download id: the moment the node receives a start request.
type agentProxy struct {
	addr string
	srv  *http.Server

	mu     sync.Mutex
	starts map[string][]time.Time
	polls  map[string]int // GET /v1/downloads/{id}: the worker's watch polls
}

func startAgentProxy(target string) (*agentProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &agentProxy{addr: ln.Addr().String(), starts: map[string][]time.Time{}, polls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	// A killed agent is part of the failover benchmark: answer 502 quietly.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == "/v1/downloads" {
			at := time.Now()
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(body, &req)
			p.mu.Lock()
			p.starts[req.ID] = append(p.starts[req.ID], at)
			p.mu.Unlock()
		}
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/downloads/"); ok && r.Method == http.MethodGet {
			p.mu.Lock()
			p.polls[id]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *agentProxy) close() { p.srv.Close() }

// startRequests returns the start requests seen, by download id.
func (p *agentProxy) startRequests() map[string][]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]time.Time, len(p.starts))
	for k, v := range p.starts {
		out[k] = append([]time.Time(nil), v...)
	}
	return out
}

// pollCount is how often the download id was polled.
func (p *agentProxy) pollCount(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls[id]
}

// quietLogger drops the Temporal client's logs: the bench prints a table.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
