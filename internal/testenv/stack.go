package testenv

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeauth"
)

// StackOptions configures StartStack. Zero values get the defaults below.
type StackOptions struct {
	// DatabaseURL is the store of the API and workers; default a fresh
	// SQLite file. Pass testenv.Postgres(t) to run on PostgreSQL.
	DatabaseURL string
	// Agents is the number of node agents, node-1 … node-N; default 2.
	Agents int
	// Workers is the number of worker processes; default 1.
	Workers int
	// Pools are registered through the API. Default: one shared pool
	// "shared" (type nfs) that every agent sees in the same directory, and
	// one local pool "local-N" per agent node-N.
	Pools []StackPool
	// NoRegister leaves nodes and pools unregistered.
	NoRegister bool
	// NodeToken is the cluster secret of the API and workers; each agent
	// gets its own credential derived from it. Default a random one.
	NodeToken string
	// APIToken, when set, is required by the API (and sent by Stack.API).
	APIToken string
	// WorkerArgs are extra flags for every worker, e.g. "--no-node-timeout", "5s".
	WorkerArgs []string
	// AgentArgs are extra flags for every agent.
	AgentArgs []string
	// NodeAgentArgs are extra flags for one agent, by node id, after
	// AgentArgs: e.g. a --qemu-img for node-2 only.
	NodeAgentArgs map[string][]string
	// AgentTLS, when set, is how the test reaches agents that serve HTTPS
	// (AgentArgs then carry --tls-cert and --tls-key).
	AgentTLS *tls.Config
	// Env is added to the environment of the API, the workers and the agents.
	Env []string
	// PersistTemporal keeps the Temporal dev server's state in a SQLite
	// file, so that Stack.Temporal.Restart() loses no workflow.
	PersistTemporal bool
	// TemporalDatabaseURL, when set, runs a real Temporal server
	// (bin/temporal-server) on this PostgreSQL database, whose schema is
	// set up first, instead of the dev server: see StartTopology.
	TemporalDatabaseURL string
	// WorkerMetrics gives each worker a --metrics-listen on a port of its
	// own: Stack.WorkerMetricsURL tells where.
	WorkerMetrics bool
	// APIs is the number of API replicas, each on its own port; default 1.
	// Stack.API talks to the first; APIClient(i) to any.
	APIs int
}

// StackPool is a storage pool of the stack, served by the agents of
// NodeIDs. A shared pool has one directory that all its nodes use (Dir,
// default a fresh temp dir); a local pool gets a fresh directory on each
// node. Stack.PoolDir tells where.
type StackPool struct {
	ID      string
	Shared  bool
	NodeIDs []string
	Dir     string // the shared pool's directory (shared pools only)
	// ImageFormat is the pool's image_format ("raw", "qcow2"; default
	// none: images are kept as the vendor ships them).
	ImageFormat string
}

// Stack is the whole of cloudimages as separate processes of the built
// binary, as in production: a Temporal dev server, workers, the API and
// node agents, with nodes and pools registered through the REST API. It
// stops when the test ends; each process's log is printed if it fails.
type Stack struct {
	t         testing.TB
	opts      StackOptions
	Temporal  *Process
	Workers   []*Process
	APIServer *Process
	// APIServers are all API replicas; APIServers[0] is APIServer.
	APIServers []*Process
	Agents     []*Agent
	// API is a client of the REST API, with the API token if any.
	API *APIClient

	temporal *launch.Temporal
	server   *launch.TemporalServer // instead of temporal, with TemporalDatabaseURL
	control  *launch.ControlPlane
	apiURL   string
	apiURLs  []string
	metrics  map[string]string            // worker name → its /metrics URL
	poolDirs map[string]map[string]string // pool id → node id → dir
}

// StartStack starts the Temporal dev server, the agents, the workers and
// the API, waits until each one serves, and registers nodes and pools.
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	opts = stackDefaults(t, opts)
	s := &Stack{t: t, opts: opts, poolDirs: map[string]map[string]string{}}
	s.startTemporal()
	s.startAgents()
	s.control = &launch.ControlPlane{Bin: Binary(t), TemporalAddress: s.TemporalAddress(), DatabaseURL: opts.DatabaseURL,
		NodeToken: opts.NodeToken, APIToken: opts.APIToken, Env: append([]string{"CLOUDIMAGES_LOG_LEVEL=debug"}, opts.Env...)}
	for i := range opts.Workers {
		s.Workers = append(s.Workers, s.newWorker(fmt.Sprintf("worker-%d", i+1)))
		s.Workers[i].Start()
	}
	s.startAPI()
	if !opts.NoRegister {
		s.Register()
	}
	return s
}

func stackDefaults(t testing.TB, opts StackOptions) StackOptions {
	if opts.DatabaseURL == "" {
		opts.DatabaseURL = SQLite(t)
	}
	if opts.Agents == 0 {
		opts.Agents = 2
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.APIs == 0 {
		opts.APIs = 1
	}
	if opts.NodeToken == "" {
		opts.NodeToken = "node-token-" + randomHex(8)
	}
	opts.Pools = slices.Clone(opts.Pools) // the caller's stays as it was
	for i, p := range opts.Pools {
		if p.Shared && p.Dir == "" {
			opts.Pools[i].Dir = t.TempDir()
		}
	}
	if opts.Pools == nil {
		shared := StackPool{ID: "shared", Shared: true, Dir: t.TempDir()}
		for i := range opts.Agents {
			shared.NodeIDs = append(shared.NodeIDs, nodeName(i))
		}
		opts.Pools = append(opts.Pools, shared)
		for i := range opts.Agents {
			opts.Pools = append(opts.Pools, StackPool{ID: fmt.Sprintf("local-%d", i+1), NodeIDs: []string{nodeName(i)}})
		}
	}
	return opts
}

func nodeName(i int) string { return fmt.Sprintf("node-%d", i+1) }

// TemporalAddress returns the host:port of the Temporal frontend.
func (s *Stack) TemporalAddress() string {
	if s.server != nil {
		return s.server.Address()
	}
	return s.temporal.Address()
}

// TemporalWebURL returns the URL of Temporal Web; "" with a Temporal
// server, which serves none.
func (s *Stack) TemporalWebURL() string {
	if s.server != nil {
		return ""
	}
	return s.temporal.WebURL()
}

// APIURL returns the base URL of the REST API, e.g. http://127.0.0.1:PORT.
func (s *Stack) APIURL() string { return s.apiURL }

// NodeToken returns the cluster secret (each agent's Token is the
// credential derived from it).
func (s *Stack) NodeToken() string { return s.opts.NodeToken }

// DatabaseURL returns the store's URL.
func (s *Stack) DatabaseURL() string { return s.opts.DatabaseURL }

// Agent returns the agent of a node id such as "node-1".
func (s *Stack) Agent(nodeID string) *Agent {
	for _, a := range s.Agents {
		if a.NodeID() == nodeID {
			return a
		}
	}
	s.t.Fatalf("the stack has no node %q", nodeID)
	return nil
}

// PoolDir returns the directory of a pool on a node: for a shared pool
// the same one for every node.
func (s *Stack) PoolDir(poolID, nodeID string) string {
	dir, ok := s.poolDirs[poolID][nodeID]
	if !ok {
		s.t.Fatalf("pool %q is not on node %q", poolID, nodeID)
	}
	return dir
}

// Pools returns the stack's pools.
func (s *Stack) Pools() []StackPool { return s.opts.Pools }

// TemporalClient returns an SDK client of the stack's Temporal server,
// closed when the test ends.
func (s *Stack) TemporalClient() client.Client {
	s.t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.TemporalAddress(), Namespace: "default"})
	if err != nil {
		s.t.Fatalf("dial temporal at %s: %v", s.TemporalAddress(), err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// TemporalCLI runs the pinned temporal CLI against the stack's server
// (--address and --namespace are added) and returns its combined output
// and error.
func (s *Stack) TemporalCLI(args ...string) (string, error) {
	args = append(args, "--address", s.TemporalAddress(), "--namespace", "default")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, TemporalCLI(s.t), args...).CombinedOutput()
	return string(out), err
}

// AddWorker starts one more worker process and returns it.
func (s *Stack) AddWorker() *Process {
	s.t.Helper()
	w := s.newWorker(fmt.Sprintf("worker-%d", len(s.Workers)+1))
	s.Workers = append(s.Workers, w)
	w.Start()
	return w
}

func (s *Stack) startTemporal() {
	s.t.Helper()
	if s.opts.TemporalDatabaseURL != "" {
		s.server = &launch.TemporalServer{Bin: TemporalServerBinary(s.t), DatabaseURL: s.opts.TemporalDatabaseURL}
		if err := s.server.SetupSchema(context.Background()); err != nil {
			s.t.Fatal(err)
		}
		s.Temporal = newProcess(s.t, s.server.Process(""))
		s.Temporal.startOnFreePort(func() {
			s.server.Port = FreePort(s.t)
			s.server.Apply(s.Temporal.p)
		})
		return
	}
	s.temporal = &launch.Temporal{CLI: TemporalCLI(s.t)}
	if s.opts.PersistTemporal {
		s.temporal.DBFile = filepath.Join(s.t.TempDir(), "temporal.db")
	}
	s.Temporal = newProcess(s.t, s.temporal.Process(""))
	s.Temporal.startOnFreePort(func() {
		s.temporal.Port, s.temporal.UIPort = FreePort(s.t), FreePort(s.t)
		s.temporal.Apply(s.Temporal.p)
	})
}

func (s *Stack) startAgents() {
	s.t.Helper()
	for i := range s.opts.Agents {
		node := nodeName(i)
		var pools []nodeagent.PoolDir
		for _, p := range s.opts.Pools {
			if !slices.Contains(p.NodeIDs, node) {
				continue
			}
			dir := p.Dir
			if !p.Shared {
				dir = s.t.TempDir()
			}
			if s.poolDirs[p.ID] == nil {
				s.poolDirs[p.ID] = map[string]string{}
			}
			s.poolDirs[p.ID][node] = dir
			pools = append(pools, nodeagent.PoolDir{ID: p.ID, Dir: dir})
		}
		if len(pools) == 0 {
			pools = []nodeagent.PoolDir{{ID: "unused-" + node, Dir: s.t.TempDir()}}
		}
		s.Agents = append(s.Agents, StartAgent(s.t, AgentOptions{
			NodeID: node, Pools: pools, Token: nodeauth.Credential(s.opts.NodeToken, node), AllowPrivateNetworks: true,
			Env: s.opts.Env, Args: append(slices.Clone(s.opts.AgentArgs), s.opts.NodeAgentArgs[node]...), ClientTLS: s.opts.AgentTLS,
		}))
	}
}

func (s *Stack) newWorker(name string) *Process {
	args := slices.Clone(s.opts.WorkerArgs)
	if s.opts.WorkerMetrics {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(s.t))
		if s.metrics == nil {
			s.metrics = map[string]string{}
		}
		s.metrics[name] = "http://" + addr + "/metrics"
		args = append(args, "--metrics-listen", addr)
	}
	return newProcess(s.t, s.control.Worker(name, "", args...))
}

// WorkerMetricsURL returns the /metrics URL of a worker (by its name,
// e.g. "worker-1") started with StackOptions.WorkerMetrics.
func (s *Stack) WorkerMetricsURL(name string) string {
	u, ok := s.metrics[name]
	if !ok {
		s.t.Fatalf("worker %q serves no metrics: set StackOptions.WorkerMetrics", name)
	}
	return u
}

func (s *Stack) startAPI() {
	s.t.Helper()
	for i := range s.opts.APIs {
		p := s.control.API("")
		if i > 0 {
			p.Name = fmt.Sprintf("api-%d", i+1)
		}
		proc := newProcess(s.t, p)
		proc.startOnFreePort(func() {
			addr := "127.0.0.1:" + strconv.Itoa(FreePort(s.t))
			if i == 0 {
				s.apiURL = "http://" + addr
			}
			s.apiURLs = append(s.apiURLs[:i], "http://"+addr)
			s.control.ApplyAPI(proc.p, addr, s.TemporalWebURL())
		})
		s.APIServers = append(s.APIServers, proc)
	}
	s.APIServer = s.APIServers[0]
	s.API = &APIClient{&api.Client{BaseURL: s.apiURL, Token: s.opts.APIToken}}
}

// APIClient returns a client of API replica i (0 is Stack.API's), with
// the API token if any.
func (s *Stack) APIClient(i int) *APIClient {
	return &APIClient{&api.Client{BaseURL: s.apiURLs[i], Token: s.opts.APIToken}}
}

// Register registers every agent as a node and every pool through the
// REST API. A node or pool that exists already (409) is left as it is.
func (s *Stack) Register() {
	s.t.Helper()
	var nodes []launch.Node
	for _, a := range s.Agents {
		nodes = append(nodes, launch.Node{ID: a.NodeID(), Address: a.Address()})
	}
	var pools []launch.Pool
	for _, p := range s.opts.Pools {
		pools = append(pools, launch.Pool{ID: p.ID, Shared: p.Shared, NodeIDs: p.NodeIDs, ImageFormat: p.ImageFormat})
	}
	if err := launch.Register(context.Background(), s.API.Client, nodes, pools); err != nil {
		s.t.Fatal(err)
	}
}

// APIClient is the REST API's client with a test helper on top.
type APIClient struct {
	*api.Client
}

// MustDo is Do that fails the test on an error or on a status other than
// the wanted ones (any 2xx when none are given).
func (c *APIClient) MustDo(t testing.TB, method, path string, in, out any, want ...int) int {
	t.Helper()
	var raw json.RawMessage
	status, err := c.Do(context.Background(), method, path, in, &raw)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	ok := len(want) == 0 && status/100 == 2
	for _, w := range want {
		ok = ok || status == w
	}
	if !ok {
		t.Fatalf("%s %s: status %d, want %v: %s", method, path, status, want, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return status
}
