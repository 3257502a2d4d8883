// Package launch starts and supervises the processes of a cloudimages
// setup — the Temporal dev server, node agents, workers and the API — and
// registers nodes and pools through the REST API. `cloudimages dev`, the
// test stack (internal/testenv) and the benchmark all launch through it.
package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrPortTaken is a start that failed because a port was in use: another
// process took it between FreePort and the bind.
var ErrPortTaken = errors.New("port taken")

// Process is one long-running child process: started, stopped and
// restarted with the same command line. Its output, across all its runs,
// goes to LogPath.
type Process struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // added to this process's environment
	LogPath string
	// Echo, when set, also gets the output line by line, prefixed with the
	// name (`cloudimages dev` shows its children's logs this way).
	Echo io.Writer
	// Ready is polled after a start until it returns nil; pid is the run's.
	// Nil: ready as soon as started.
	Ready        func(ctx context.Context, pid int) error
	ReadyTimeout time.Duration // default one minute
	StopTimeout  time.Duration // SIGTERM to SIGKILL; default 30 s

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the process unless it runs, and waits until it is ready. A
// run that does not get ready is killed; the error holds its log's tail
// and is ErrPortTaken when it could not bind.
func (p *Process) Start(ctx context.Context) error {
	if p.Running() {
		return nil
	}
	done, err := p.spawn()
	if err != nil {
		return err
	}
	err = p.waitReady(ctx, done)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		_ = p.Stop()
		return err
	}
	p.Kill()
	log := p.Log()
	if strings.Contains(log[strings.LastIndex(log, "---- start"):], "address already in use") {
		return fmt.Errorf("%w: %s: %v", ErrPortTaken, p.Name, err)
	}
	return fmt.Errorf("%s: %v; its log is %s:\n%s", p.Name, err, p.LogPath, p.Tail(20))
}

func (p *Process) spawn() (chan struct{}, error) {
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", p.Name, err)
	}
	fmt.Fprintf(logFile, "---- start %s %s %s\n", time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	var out io.Writer = logFile
	var echo *prefixWriter
	if p.Echo != nil {
		echo = &prefixWriter{prefix: fmt.Sprintf("%-9s| ", p.Name), file: logFile, term: p.Echo}
		out = echo
		cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipe does not hang Wait
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", p.Name, p.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if echo != nil {
			echo.flush()
		}
		fmt.Fprintf(logFile, "---- exit %s %v\n", time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		logFile.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return done, nil
}

// waitReady polls p.Ready every 50 ms until it passes, the run exits, ctx
// ends or the timeout passes.
func (p *Process) waitReady(ctx context.Context, exited <-chan struct{}) error {
	if p.Ready == nil {
		return nil
	}
	timeout := p.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	pid := p.Pid()
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.Ready(cctx, pid)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited at start (%v; last check: %v)", p.State(), err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", timeout, err)
		}
	}
}

// StartOnFreePort starts p with setPorts choosing its ports (from
// FreePort) before each try, and tries again when a port was taken.
func StartOnFreePort(ctx context.Context, p *Process, setPorts func() error) error {
	for try := 1; ; try++ {
		if err := setPorts(); err != nil {
			return err
		}
		err := p.Start(ctx)
		if err == nil || !errors.Is(err, ErrPortTaken) || try == 3 {
			return err
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop sends SIGTERM and waits for the exit; after StopTimeout it kills
// the process's group and says so in the error. Whatever the process left
// in its group is killed either way.
func (p *Process) Stop() error {
	cmd, done := p.current()
	if cmd == nil {
		return nil
	}
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var err error
	if e := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); e != nil && !errors.Is(e, syscall.ESRCH) {
		err = fmt.Errorf("stop %s: %w", p.Name, e)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		err = fmt.Errorf("%s did not stop %s after SIGTERM; killed it", p.Name, timeout)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return err
}

// Kill sends SIGKILL to the process's group and waits for the exit.
func (p *Process) Kill() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Done returns a channel closed when the current run exits (nil before
// the first start).
func (p *Process) Done() <-chan struct{} {
	_, done := p.current()
	return done
}

// Pid returns the pid of the current run, or 0 when none was started.
func (p *Process) Pid() int {
	cmd, _ := p.current()
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Process) Running() bool {
	_, done := p.current()
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

// State says how the current run ended, or "running".
func (p *Process) State() string {
	cmd, done := p.current()
	if cmd == nil {
		return "not started"
	}
	select {
	case <-done:
		return cmd.ProcessState.String()
	default:
		return "running"
	}
}

// Log returns what the process has logged so far, across its runs.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the log, indented.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// prefixWriter writes a child's output to its log file as it is, and to
// the terminal line by line with the child's name in front.
type prefixWriter struct {
	prefix string
	file   io.Writer
	term   io.Writer

	mu  sync.Mutex
	buf []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.file.Write(b); err != nil {
		return 0, err
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(w.term, "%s%s\n", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		fmt.Fprintf(w.term, "%s%s\n", w.prefix, w.buf)
		w.buf = nil
	}
}
