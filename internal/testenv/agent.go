package testenv

import (
	"crypto/tls"
	"strconv"
	"testing"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// AgentOptions configures a node agent process. Zero values get defaults.
type AgentOptions struct {
	NodeID string // default "node-1"
	// Pools the agent serves; default one pool "pool-1" in a fresh temp dir.
	Pools []nodeagent.PoolDir
	// Token is the agent's credential; default one derived from a random
	// cluster secret (see Agent.Token).
	Token         string
	MaxConcurrent int // default the agent's own default (4)
	// AllowPrivateNetworks lets the agent download from 127.0.0.1, where
	// Upstream listens. It is off by default, as in production.
	AllowPrivateNetworks bool
	// Env is added to the process environment (e.g. CLOUDIMAGES_RETRY_BACKOFF=50ms).
	Env []string
	// Args are extra command-line flags.
	Args []string
	// ClientTLS, when set, is how Client reaches an agent that serves
	// HTTPS (Args then carry --tls-cert and --tls-key).
	ClientTLS *tls.Config
}

// Agent is a `cloudimages nodeagent` process started for a test. Its log
// (all its runs) is printed when the test fails; it is stopped when the
// test ends.
type Agent struct {
	t    testing.TB
	opts AgentOptions
	spec *launch.Agent
	proc *Process
}

// StartAgent starts a node agent process on a free 127.0.0.1 port and
// waits until GET /v1/health answers.
func StartAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	a := newAgent(t, opts)
	a.proc.startOnFreePort(func() {
		a.spec.Listen = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		a.spec.Apply(a.proc.p)
	})
	return a
}

// newAgent fills in opts' defaults and prepares the agent's process,
// ready when its GET /v1/health answers, without starting it.
func newAgent(t testing.TB, opts AgentOptions) *Agent {
	if opts.NodeID == "" {
		opts.NodeID = "node-1"
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []nodeagent.PoolDir{{ID: "pool-1", Dir: t.TempDir()}}
	}
	if opts.Token == "" {
		opts.Token = nodeauth.Credential("test-secret-"+randomHex(8), opts.NodeID)
	}
	spec := &launch.Agent{Bin: Binary(t), NodeID: opts.NodeID, Token: opts.Token, Pools: opts.Pools,
		MaxConcurrent: opts.MaxConcurrent, AllowPrivateNetworks: opts.AllowPrivateNetworks,
		Args: opts.Args, Env: append([]string{"CLOUDIMAGES_LOG_LEVEL=debug"}, opts.Env...), ClientTLS: opts.ClientTLS}
	return &Agent{t: t, opts: opts, spec: spec, proc: newProcess(t, spec.Process("nodeagent-"+opts.NodeID, ""))}
}

// Address returns the agent's host:port.
func (a *Agent) Address() string { return a.spec.Listen }

// URL returns the agent's base URL, e.g. for GET /metrics.
func (a *Agent) URL() string { return a.spec.URL() }

// Token returns the agent's bearer token.
func (a *Agent) Token() string { return a.opts.Token }

// NodeID returns the agent's node id.
func (a *Agent) NodeID() string { return a.opts.NodeID }

// Pools returns the pools the agent serves.
func (a *Agent) Pools() []nodeagent.PoolDir { return a.opts.Pools }

// PoolDir returns the directory of one of the agent's pools.
func (a *Agent) PoolDir(id string) string {
	for _, p := range a.opts.Pools {
		if p.ID == id {
			return p.Dir
		}
	}
	a.t.Fatalf("node agent %s serves no pool %q", a.opts.NodeID, id)
	return ""
}

// LogPath returns the file the agent logs to.
func (a *Agent) LogPath() string { return a.proc.LogPath() }

// Client returns a client for the agent, with its token.
func (a *Agent) Client() *agentclient.Client { return a.spec.Client() }

// Kill sends SIGKILL and waits for the process to exit.
func (a *Agent) Kill() { a.proc.Kill() }

// Pid is the agent process's id (0 before it started), for tests that
// send it other signals (SIGSTOP and SIGCONT freeze and wake it).
func (a *Agent) Pid() int { return a.proc.Pid() }

// Stop sends SIGTERM and waits for the process to exit (killing it after 30s).
func (a *Agent) Stop() { a.proc.Stop() }

// Restart stops the agent if it runs and starts it again on the same
// port with the same pools and options.
func (a *Agent) Restart() {
	a.t.Helper()
	a.proc.Restart()
}

// Exited reports whether the agent's current process has exited.
func (a *Agent) Exited() bool { return a.proc.Pid() != 0 && !a.proc.Running() }
