package api_test

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a cloudimages process started by a test.
type proc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(testenv.Binary(t), args...), out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(p.cmd.Environ(), "CLOUDIMAGES_NODE_TOKEN=node-secret-0123456789", "CLOUDIMAGES_API_TOKEN=", "CLOUDIMAGES_API_TOKEN_FILE=", "CLOUDIMAGES_NODE_TOKEN_FILE=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("%s exited with %v after SIGTERM:\n%s", p.cmd.Args[1], p.cmd.ProcessState, p.out)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop after SIGTERM", p.cmd.Args[1])
	}
}

// TestAPIAndWorkerStartTogetherOnOneSQLiteFile starts the API and the
// worker at the same moment on a fresh SQLite file, ten times: both open
// the file and migrate it at once, and both must come up (one of them
// failed once with "database is locked (5) (SQLITE_BUSY)").
func TestAPIAndWorkerStartTogetherOnOneSQLiteFile(t *testing.T) {
	for round := range 10 {
		db := testenv.SQLite(t)
		listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		common := []string{"--temporal-address", temporalAddr, "--database-url", db}
		api := startProc(t, append([]string{"api", "--listen", listen}, common...)...)
		worker := startProc(t, append([]string{"worker"}, common...)...)
		c := httpClient{t, "http://" + listen}
		deadline := time.Now().Add(time.Minute)
		for c.status("GET", "/healthz", "") != 200 || !strings.Contains(worker.out.String(), "worker running") {
			if !api.running() || !worker.running() || time.Now().After(deadline) {
				t.Fatalf("round %d: the API and the worker did not both come up\napi:\n%s\nworker:\n%s", round, api.out, worker.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		api.stop(t)
		worker.stop(t)
	}
}
