package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"testing"
	"time"

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
	addr string
	proc *Process
}

// StartAgent starts a node agent process on a free 127.0.0.1 port and
// waits until GET /v1/health answers.
func StartAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	a := newAgent(t, opts)
	a.proc.startOnFreePort(func() { a.listenOn("127.0.0.1:" + strconv.Itoa(FreePort(t))) })
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
	a := &Agent{t: t, opts: opts}
	env := append([]string{"CLOUDIMAGES_LOG_LEVEL=debug"}, opts.Env...)
	a.proc = newProcess(t, "nodeagent-"+opts.NodeID, Binary(t), nil, env, func(_ int, exited <-chan struct{}) error {
		return pollReady(exited, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := a.Client().Health(ctx)
			return err
		})
	})
	return a
}

// listenOn sets the address the agent's next run listens on.
func (a *Agent) listenOn(addr string) {
	a.addr = addr
	a.proc.args = a.args()
}

// errPortTaken is a start that failed because the port was in use.
var errPortTaken = errors.New("port taken")

// Address returns the agent's host:port.
func (a *Agent) Address() string { return a.addr }

// URL returns the agent's base URL, e.g. for GET /metrics.
func (a *Agent) URL() string {
	if a.opts.ClientTLS != nil {
		return "https://" + a.addr
	}
	return "http://" + a.addr
}

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
func (a *Agent) Client() *agentclient.Client {
	return agentclient.New(a.addr, a.opts.Token, agentclient.WithTLS(a.opts.ClientTLS))
}

// Kill sends SIGKILL and waits for the process to exit.
func (a *Agent) Kill() { a.proc.Kill() }

// Stop sends SIGTERM and waits for the process to exit (killing it after 30s).
func (a *Agent) Stop() { a.proc.Stop() }

// Restart stops the agent if it runs and starts it again on the same
// port with the same pools and options.
func (a *Agent) Restart() {
	a.t.Helper()
	a.proc.Restart()
}

func (a *Agent) args() []string {
	args := []string{"nodeagent",
		"--node-id", a.opts.NodeID,
		"--listen", a.addr,
		"--node-token", a.opts.Token,
	}
	for _, p := range a.opts.Pools {
		args = append(args, "--pool", p.ID+"="+p.Dir)
	}
	if a.opts.MaxConcurrent > 0 {
		args = append(args, "--max-concurrent", strconv.Itoa(a.opts.MaxConcurrent))
	}
	if a.opts.AllowPrivateNetworks {
		args = append(args, "--allow-private-networks")
	}
	return append(args, a.opts.Args...)
}

// Exited reports whether the agent's current process has exited.
func (a *Agent) Exited() bool { return a.proc.Pid() != 0 && !a.proc.Running() }
