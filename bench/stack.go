package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
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
	p     *launch.Process
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

	temporal *launch.Process
	// temporalAddr is the dev server's host:port.
	temporalAddr string
	tclient      client.Client
	worker       *launch.Process
	api          *launch.Process
	apiURL       string
	dbURL        string
	// controlErr says why the control plane is not running, when it is not.
	controlErr error
}

func freeAddr() (string, error) {
	port, err := launch.FreePort()
	return "127.0.0.1:" + strconv.Itoa(port), err
}

func (s *stack) logPath(name string) string { return filepath.Join(s.dir, "logs", name+".log") }

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
// its id) and "shared", extra flags args, and the proxy in front of it.
func (s *stack) startAgent(id, bin string, maxConcurrent int, args ...string) (*agent, error) {
	return s.startAgentEnv(id, bin, maxConcurrent, args, nil)
}

// startAgentEnv is startAgent with env added to the agent's environment.
func (s *stack) startAgentEnv(id, bin string, maxConcurrent int, args, env []string) (*agent, error) {
	a := &agent{id: id, local: "local-" + strings.TrimPrefix(id, "node-")}
	spec := &launch.Agent{Bin: bin, NodeID: id, Token: nodeauth.Credential(nodeToken, id), MaxConcurrent: maxConcurrent, AllowPrivateNetworks: true,
		Pools: []nodeagent.PoolDir{
			{ID: a.local, Dir: filepath.Join(s.dir, "pools", a.local)},
			{ID: sharedPool, Dir: filepath.Join(s.dir, "pools", sharedPool)}}, Args: args, Env: env}
	for _, p := range spec.Pools {
		if err := os.MkdirAll(p.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	a.p = spec.Process(id, s.logPath(id))
	err := launch.StartOnFreePort(context.Background(), a.p, func() error {
		var err error
		a.addr, err = freeAddr()
		spec.Listen = a.addr
		spec.Apply(a.p)
		return err
	})
	if err != nil {
		return nil, err
	}
	if a.proxy, err = startAgentProxy(a.addr); err != nil {
		_ = a.p.Stop()
		return nil, err
	}
	return a, nil
}

// restartAgent starts a stopped agent again on the same port and pools.
func (s *stack) restartAgent(a *agent) error { return a.p.Start(context.Background()) }

// startControlPlane starts the Temporal dev server, the worker and the
// API, and registers the agents' nodes and pools.
func (s *stack) startControlPlane(temporalCLI string) error {
	ctx := context.Background()
	t := &launch.Temporal{CLI: temporalCLI}
	s.temporal = t.Process(s.logPath("temporal"))
	err := launch.StartOnFreePort(ctx, s.temporal, func() error {
		var err1, err2 error
		t.Port, err1 = launch.FreePort()
		t.UIPort, err2 = launch.FreePort()
		t.Apply(s.temporal)
		return errors.Join(err1, err2)
	})
	if err != nil {
		return fmt.Errorf("temporal dev server (%s): %w", temporalCLI, err)
	}
	s.temporalAddr = t.Address()
	if s.tclient, err = client.Dial(client.Options{HostPort: t.Address(), Namespace: "default", Logger: quietLogger{}}); err != nil {
		return err
	}
	cp := &launch.ControlPlane{Bin: s.bin, TemporalAddress: t.Address(), DatabaseURL: s.dbURL, NodeToken: nodeToken}
	s.worker = cp.Worker("worker", s.logPath("worker"))
	if err := s.worker.Start(ctx); err != nil {
		return err
	}
	s.api = cp.API(s.logPath("api"))
	err = launch.StartOnFreePort(ctx, s.api, func() error {
		addr, err := freeAddr()
		s.apiURL = "http://" + addr
		cp.ApplyAPI(s.api, addr, "")
		return err
	})
	if err != nil {
		return err
	}
	return s.register()
}

// register tells the API about the nodes (at their proxies) and pools.
func (s *stack) register() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []launch.Node
	var pools []launch.Pool
	var all []string
	for _, a := range s.agents {
		nodes = append(nodes, launch.Node{ID: a.id, Address: a.proxy.addr})
		pools = append(pools, launch.Pool{ID: a.local, NodeIDs: []string{a.id}})
		all = append(all, a.id)
	}
	pools = append(pools, launch.Pool{ID: sharedPool, Shared: true, NodeIDs: all})
	return launch.Register(ctx, newAPIClient(s.apiURL).Client, nodes, pools)
}

// close stops everything, the API first and Temporal after the worker.
func (s *stack) close() {
	for _, p := range []*launch.Process{s.api, s.worker} {
		if p != nil {
			_ = p.Stop()
		}
	}
	if s.tclient != nil {
		s.tclient.Close()
	}
	if s.temporal != nil {
		_ = s.temporal.Stop()
	}
	for _, a := range s.agents {
		_ = a.p.Stop()
		a.proxy.close()
	}
}

// agentProxy forwards to one agent and notes when each POST /v1/downloads
// arrives, by download id: the moment the node receives a start request.
type agentProxy struct {
	addr    string
	handler http.Handler
	srvMu   sync.Mutex
	srv     *http.Server

	mu     sync.Mutex
	starts map[string][]time.Time
	polls  map[string]int // GET /v1/downloads/{id}: the worker's watch polls
	// hideLongPoll takes long_poll out of the agent's health: the worker
	// then polls it as before the feature (the wholepath part's baseline).
	hideLongPoll atomic.Bool
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
	rp.ModifyResponse = func(resp *http.Response) error {
		if !p.hideLongPoll.Load() || resp.Request.URL.Path != "/v1/health" || resp.StatusCode != http.StatusOK {
			return nil
		}
		return withoutLongPoll(resp)
	}
	p.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
	p.serve(ln)
	return p, nil
}

func (p *agentProxy) serve(ln net.Listener) {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	p.srv = &http.Server{Handler: p.handler}
	go p.srv.Serve(ln)
}

func (p *agentProxy) close() {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	p.srv.Close()
}

// reopen serves again on the same address after close: the failover part
// closes the proxy with its killed agent, so that the worker finds the
// node's port closed (refused), as it would without a proxy, instead of a
// proxy answering 502 for it.
func (p *agentProxy) reopen() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(ln)
	return nil
}

// withoutLongPoll rewrites a health answer without long_poll in features.
func withoutLongPoll(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var h map[string]any
	if err := json.Unmarshal(body, &h); err != nil {
		return err
	}
	if fs, ok := h["features"].([]any); ok {
		kept := fs[:0]
		for _, f := range fs {
			if f != agentclient.FeatureLongPoll {
				kept = append(kept, f)
			}
		}
		h["features"] = kept
	}
	if body, err = json.Marshal(h); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

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

// startAPI starts another API process, from bin, on the stack's Temporal
// server and database; it returns the process and its base URL.
func (s *stack) startAPI(name, bin string) (*launch.Process, string, error) {
	cp := &launch.ControlPlane{Bin: bin, TemporalAddress: s.temporalAddr, DatabaseURL: s.dbURL, NodeToken: nodeToken}
	p := cp.API(s.logPath(name))
	p.Name = name
	var url string
	err := launch.StartOnFreePort(context.Background(), p, func() error {
		addr, err := freeAddr()
		url = "http://" + addr
		cp.ApplyAPI(p, addr, "")
		return err
	})
	return p, url, err
}
