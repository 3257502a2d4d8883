package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/nodeagent"
)

// AgentOptions configures a node agent process. Zero values get defaults.
type AgentOptions struct {
	NodeID string // default "node-1"
	// Pools the agent serves; default one pool "pool-1" in a fresh temp dir.
	Pools []nodeagent.PoolDir
	// Token is the bearer token; default a random one (see Agent.Token).
	Token         string
	MaxConcurrent int // default the agent's own default (4)
	// AllowPrivateNetworks lets the agent download from 127.0.0.1, where
	// Upstream listens. It is off by default, as in production.
	AllowPrivateNetworks bool
	// Env is added to the process environment (e.g. CLOUDIMAGES_RETRY_BACKOFF=50ms).
	Env []string
	// Args are extra command-line flags.
	Args []string
}

// Agent is a `cloudimages nodeagent` process started for a test. Its log
// (all its runs) is printed when the test fails; it is stopped when the
// test ends.
type Agent struct {
	t       testing.TB
	opts    AgentOptions
	addr    string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

// StartAgent starts a node agent process on a free 127.0.0.1 port and
// waits until GET /v1/health answers.
func StartAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	if opts.NodeID == "" {
		opts.NodeID = "node-1"
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []nodeagent.PoolDir{{ID: "pool-1", Dir: t.TempDir()}}
	}
	if opts.Token == "" {
		opts.Token = "test-token-" + randomHex(8)
	}
	a := &Agent{
		t:       t,
		opts:    opts,
		addr:    "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		logPath: filepath.Join(t.TempDir(), opts.NodeID+".log"),
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.logPath); err == nil {
				t.Logf("node agent %s log:\n%s", opts.NodeID, b)
			}
		}
	})
	// FreePort's port may be taken by another process before the agent
	// binds it: then try another one.
	for try := 1; ; try++ {
		err := a.start()
		if err == nil {
			return a
		}
		if !errors.Is(err, errPortTaken) || try == 3 {
			t.Fatal(err)
		}
		a.addr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	}
}

// errPortTaken is a start that failed because the port was in use.
var errPortTaken = errors.New("port taken")

// Address returns the agent's host:port.
func (a *Agent) Address() string { return a.addr }

// URL returns the agent's base URL, e.g. for GET /metrics.
func (a *Agent) URL() string { return "http://" + a.addr }

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
func (a *Agent) LogPath() string { return a.logPath }

// Client returns a client for the agent, with its token.
func (a *Agent) Client() *nodeagent.Client { return nodeagent.NewClient(a.addr, a.opts.Token) }

// Kill sends SIGKILL and waits for the process to exit.
func (a *Agent) Kill() { a.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to exit (killing it after 30s).
func (a *Agent) Stop() { a.signal(syscall.SIGTERM) }

// Restart stops the agent if it runs and starts it again on the same
// port with the same pools and options.
func (a *Agent) Restart() {
	a.t.Helper()
	a.Stop()
	if err := a.start(); err != nil {
		a.t.Fatal(err)
	}
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

func (a *Agent) start() error {
	a.t.Helper()
	logFile, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node agent log: %w", err)
	}
	fmt.Fprintf(logFile, "---- start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(a.args(), " "))
	cmd := exec.Command(Binary(a.t), a.args()...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "CLOUDIMAGES_LOG_LEVEL=debug")
	cmd.Env = append(cmd.Env, a.opts.Env...)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start node agent: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	c := a.Client()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Health(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(a.logPath)
			if bytes.Contains(b[bytes.LastIndex(b, []byte("---- start")):], []byte("address already in use")) {
				return fmt.Errorf("%w: %s", errPortTaken, a.addr)
			}
			return fmt.Errorf("node agent %s exited at start (%v):\n%s", a.opts.NodeID, cmd.ProcessState, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node agent %s does not answer /v1/health after 30s: %v", a.opts.NodeID, err)
		}
	}
}

func (a *Agent) signal(sig syscall.Signal) {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		a.t.Logf("signal node agent %s: %v", a.opts.NodeID, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		a.t.Errorf("node agent %s did not exit 30s after %v; killing it", a.opts.NodeID, sig)
		_ = cmd.Process.Kill()
		<-done
	}
}

// Exited reports whether the agent's current process has exited.
func (a *Agent) Exited() bool {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}
