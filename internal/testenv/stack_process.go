package testenv

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
)

// Process is one long-running child process of a test (a worker, the API,
// the Temporal dev server): started, killed and restarted with the same
// command line. Its output, across all its runs, goes to one log file that
// is printed when the test fails.
type Process struct {
	t testing.TB
	p *launch.Process
}

// newProcess wraps p for a test: its log goes to the test's temp dir, and
// it is stopped (its log printed on failure) when the test ends.
func newProcess(t testing.TB, p *launch.Process) *Process {
	p.LogPath = filepath.Join(t.TempDir(), p.Name+".log")
	tp := &Process{t: t, p: p}
	t.Cleanup(func() {
		tp.Stop()
		if t.Failed() {
			tp.printLog()
		}
	})
	return tp
}

// Name returns the process's name in logs, e.g. "worker-1".
func (p *Process) Name() string { return p.p.Name }

// LogPath returns the file the process logs to.
func (p *Process) LogPath() string { return p.p.LogPath }

// Log returns what the process has logged so far, across its runs.
func (p *Process) Log() string { return p.p.Log() }

// Pid returns the pid of the current run, or 0 when none was started.
func (p *Process) Pid() int { return p.p.Pid() }

// Running reports whether the current run has not exited.
func (p *Process) Running() bool { return p.p.Running() }

// Start starts the process unless it runs, and waits until it is ready.
func (p *Process) Start() {
	p.t.Helper()
	if err := p.p.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

// startOnFreePort starts the process with setPorts(…) choosing its ports
// from FreePort, and tries other ports when one was taken by another
// process between FreePort and the bind.
func (p *Process) startOnFreePort(setPorts func()) {
	p.t.Helper()
	err := launch.StartOnFreePort(context.Background(), p.p, func() error { setPorts(); return nil })
	if err != nil {
		p.t.Fatal(err)
	}
}

// Kill sends SIGKILL to the process (and its group) and waits until it is gone.
func (p *Process) Kill() { p.p.Kill() }

// Terminate sends SIGTERM and returns at once, as an orchestrator does
// when a rolling restart begins: Wait tells when the process has exited,
// State how.
func (p *Process) Terminate() {
	p.t.Helper()
	if pid := p.p.Pid(); pid == 0 || !p.p.Running() {
		p.t.Fatalf("SIGTERM to %s: it does not run", p.p.Name)
	} else if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM to %s (pid %d): %v", p.p.Name, pid, err)
	}
}

// State says how the current run ended (e.g. "exit status 0"), or "running".
func (p *Process) State() string { return p.p.State() }

// Stop sends SIGTERM and waits until the process exits, killing it after 30 s.
func (p *Process) Stop() {
	if err := p.p.Stop(); err != nil {
		p.t.Error(err)
	}
}

// Restart stops the process if it runs and starts it again.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Wait waits up to timeout for the current run to exit and reports whether it did.
func (p *Process) Wait(timeout time.Duration) bool {
	done := p.p.Done()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *Process) printLog() {
	b, _ := os.ReadFile(p.p.LogPath)
	log := string(b)
	const max = 20000
	if len(log) > max {
		log = "…" + log[len(log)-max:]
	}
	p.t.Logf("%s log (%s):\n%s", p.p.Name, p.p.LogPath, log)
}
