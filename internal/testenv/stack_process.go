package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is one long-running child process of a test (a worker, the API,
// the Temporal dev server): started, killed and restarted with the same
// command line. Its output, across all its runs, goes to one log file that
// is printed when the test fails.
type Process struct {
	t       testing.TB
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	// ready waits until a fresh process serves; it gets the process's pid
	// and a channel closed when the process exits.
	ready func(pid int, exited <-chan struct{}) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProcess(t testing.TB, name, path string, args, env []string, ready func(int, <-chan struct{}) error) *Process {
	p := &Process{t: t, name: name, path: path, args: args, env: env, ready: ready,
		logPath: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			p.printLog()
		}
	})
	return p
}

// Name returns the process's name in logs, e.g. "worker-1".
func (p *Process) Name() string { return p.name }

// LogPath returns the file the process logs to.
func (p *Process) LogPath() string { return p.logPath }

// Log returns what the process has logged so far, across its runs.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Pid returns the pid of the current run, or 0 when none was started.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Start starts the process unless it runs, and waits until it is ready.
func (p *Process) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

// startOnFreePort starts the process with setPorts(…) choosing its ports
// from FreePort, and tries other ports when one was taken by another
// process between FreePort and the bind.
func (p *Process) startOnFreePort(setPorts func()) {
	p.t.Helper()
	for try := 1; ; try++ {
		setPorts()
		err := p.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || try == 3 {
			p.t.Fatal(err)
		}
	}
}

func (p *Process) start() error {
	if p.Running() {
		return nil
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	fmt.Fprintf(logFile, "---- start %s %s %s\n", time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), p.env...)
	// Its own process group: a kill reaches anything it started, and a
	// Ctrl-C of `go test` does not race the test's own shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logFile, "---- exit %s %v\n", time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		logFile.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	if err := p.ready(cmd.Process.Pid, done); err != nil {
		p.signal(syscall.SIGKILL)
		log := p.Log()
		if strings.Contains(log[strings.LastIndex(log, "---- start"):], "address already in use") {
			return fmt.Errorf("%w: %s: %v", errPortTaken, p.name, err)
		}
		return fmt.Errorf("%s is not ready: %v\n%s", p.name, err, log)
	}
	return nil
}

// Kill sends SIGKILL to the process (and its group) and waits until it is gone.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits until the process exits, killing it after 30 s.
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

// Restart stops the process if it runs and starts it again.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Wait waits up to timeout for the current run to exit and reports whether it did.
func (p *Process) Wait(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
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

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	target := cmd.Process.Pid
	if sig == syscall.SIGKILL {
		target = -target // the whole group
	}
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Logf("signal %s: %v", p.name, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not exit 30s after %v; killing it", p.name, sig)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (p *Process) printLog() {
	log := p.Log()
	const max = 20000
	if len(log) > max {
		log = "…" + log[len(log)-max:]
	}
	p.t.Logf("%s log (%s):\n%s", p.name, p.logPath, log)
}

// pollReady calls check every 50 ms until it returns nil, the process
// exits, or timeout passes.
func pollReady(exited <-chan struct{}, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("it exited at start (last check: %v)", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", timeout, err)
		}
	}
}
