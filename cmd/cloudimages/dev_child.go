package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a child gets to stop after SIGTERM before it is
// killed.
const stopTimeout = 15 * time.Second

// child is one process of the dev setup. Its output goes to
// {data dir}/logs/{name}.log and, prefixed with its name, to our stderr
// (except the Temporal server's, which is noise to most users).
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// spawn starts a child in its own process group, so that Ctrl-C reaches
// only us and we stop the children in order, and so that a kill reaches
// anything the child started.
func (d *devRun) spawn(name, path string, args, env []string) (*child, error) {
	logPath := filepath.Join(d.cfg.dataDir, "logs", name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	fmt.Fprintf(logFile, "---- %s start %s %s\n", time.Now().Format(time.RFC3339), path, strings.Join(args, " "))
	var term io.Writer = os.Stderr
	if name == "temporal" {
		term = io.Discard
	}
	out := &prefixWriter{prefix: fmt.Sprintf("%-9s| ", name), file: logFile, term: term}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipe does not hang Wait
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	d.children = append(d.children, c)
	go func() {
		_ = cmd.Wait()
		out.flush()
		fmt.Fprintf(logFile, "---- %s exit %v\n", time.Now().Format(time.RFC3339), cmd.ProcessState)
		logFile.Close()
		close(c.done)
		if !d.stopping.Load() {
			select {
			case d.exited <- c:
			default:
			}
		}
	}()
	return c, nil
}

// waitReady polls check until it passes, the child exits, ctx ends or
// timeout passes.
func (d *devRun) waitReady(ctx context.Context, c *child, timeout time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited at start (%v); its log is %s:\n%s", c.name, c.state(), c.logPath, c.tail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not ready after %s: %v; its log is %s", c.name, timeout, err, c.logPath)
		}
	}
}

// stopAll stops the children in the reverse order of their start (the
// API before the worker, the agents before Temporal), each with SIGTERM
// first and SIGKILL of its group after stopTimeout.
func (d *devRun) stopAll() {
	d.stopping.Store(true)
	for i := len(d.children) - 1; i >= 0; i-- {
		d.children[i].stop()
	}
}

func (c *child) stop() {
	pid := c.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(os.Stderr, "stop %s: %v\n", c.name, err)
	}
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		fmt.Fprintf(os.Stderr, "%s did not stop %s after SIGTERM; killing it\n", c.name, stopTimeout)
	}
	// Whatever the child left in its group goes too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-c.done
}

func (c *child) state() string {
	select {
	case <-c.done:
		return c.cmd.ProcessState.String()
	default:
		return "running"
	}
}

// tail returns the last n lines of the child's log.
func (c *child) tail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
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

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.file.Write(p); err != nil {
		return 0, err
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(w.term, "%s%s\n", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		fmt.Fprintf(w.term, "%s%s\n", w.prefix, w.buf)
		w.buf = nil
	}
}
