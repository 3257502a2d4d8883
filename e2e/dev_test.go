package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// devRun is one `cloudimages dev` process started by a test.
type devRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr
	done   chan struct{}
	api    *testenv.APIClient
	webURL string
}

// devPorts are the free ports one dev setup listens on, kept across runs.
type devPorts struct{ api, agent1, agent2, temporal, ui string }

func freeDevPorts(t *testing.T) devPorts {
	p := func() string { return strconv.Itoa(testenv.FreePort(t)) }
	return devPorts{p(), p(), p(), p(), p()}
}

// startDev starts `cloudimages dev` and waits until its API answers GET /healthz.
func startDev(t *testing.T, dataDir string, ports devPorts, extra ...string) *devRun {
	t.Helper()
	args := append([]string{"dev", "--data-dir", dataDir,
		"--listen", "127.0.0.1:" + ports.api,
		"--agent-listen", "127.0.0.1:" + ports.agent1 + ",127.0.0.1:" + ports.agent2,
		"--temporal-address", "127.0.0.1:" + ports.temporal,
		"--temporal-ui-port", ports.ui}, extra...)
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append(os.Environ(), testenv.TemporalCLIEnv+"="+testenv.TemporalCLI(t))
	r := &devRun{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{}),
		api: &testenv.APIClient{Client: &api.Client{BaseURL: "http://127.0.0.1:" + ports.api}}, webURL: "http://127.0.0.1:" + ports.ui}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if !r.exited() {
			r.interrupt(time.Minute)
		}
		if t.Failed() {
			t.Logf("cloudimages dev output:\n%s", r.out.String())
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		status, err := r.api.Do(context.Background(), http.MethodGet, "/healthz", nil, nil)
		if err == nil && status == http.StatusOK && strings.Contains(r.out.String(), "Ctrl-C stops everything") {
			return r
		}
		if r.exited() {
			t.Fatalf("cloudimages dev exited at start (%v):\n%s", cmd.ProcessState, r.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("cloudimages dev: no GET /healthz after 3 minutes (%v):\n%s", err, r.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *devRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for the exit.
func (r *devRun) interrupt(timeout time.Duration) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		r.t.Fatalf("cloudimages dev did not exit %s after SIGINT", timeout)
	}
}

// childPids returns the pids of the processes whose parent is pid.
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			out = append(out, child)
		}
	}
	return out
}

func TestDevRunsEverythingAndStopsCleanly(t *testing.T) {
	dataDir, ports := t.TempDir(), freeDevPorts(t)
	up := testenv.NewUpstream(t)
	f := addImage(up, "dev.qcow2", smallSize)

	// First run: the mirror is on 127.0.0.1, which dev's agents refuse
	// unless told otherwise.
	r := startDev(t, dataDir, ports, "--allow-private-networks")
	for _, want := range []string{"http://127.0.0.1:" + ports.api, r.webURL, "curl", "temporal workflow list",
		"CLOUDIMAGES_API_URL=http://127.0.0.1:" + ports.api, "cloudimages images pull cirros-0.6.3 --pool shared-nfs --wait"} {
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("the welcome does not mention %q", want)
		}
	}
	checkDevRegistered(t, r.api, ports)
	if resp, err := http.Get(r.webURL); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("Temporal Web at %s does not answer: %v", r.webURL, err)
	} else {
		resp.Body.Close()
	}
	var img api.Image
	r.api.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": f.url, "name": "dev", "checksum": f.sum, "pool_id": "shared-nfs"},
		&img, http.StatusAccepted)
	img = waitAPIStatus(t, r.api, img.ID, "READY", time.Minute)
	checkReadyFile(t, img, f)
	if !strings.HasPrefix(img.Path, dataDir) {
		t.Errorf("the image is at %s, outside the data dir %s", img.Path, dataDir)
	}

	children := childPids(t, r.cmd.Process.Pid)
	if len(children) != 5 {
		t.Errorf("cloudimages dev has %d children %v, want 5: temporal, two agents, worker, API", len(children), children)
	}
	r.interrupt(time.Minute)
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGINT, want 0", code)
	}
	for _, pid := range children {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("child %d is still there after cloudimages dev exited (%v)", pid, err)
		}
	}
	for _, port := range []string{ports.api, ports.agent1, ports.agent2, ports.temporal} {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Errorf("port %s is still taken after the exit: %v", port, err)
			continue
		}
		l.Close()
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}

	// Second run, on the same data dir: the image is still READY, the
	// registrations are the same, the token is kept; and loopback mirrors
	// are refused by default.
	r2 := startDev(t, dataDir, ports)
	again := getAPIImage(t, r2.api, img.ID)
	if again.Status != "READY" || again.Path != img.Path {
		t.Errorf("after a restart the image is %s at %s, want READY at %s", again.Status, again.Path, img.Path)
	}
	checkReadyFile(t, again, f)
	checkDevRegistered(t, r2.api, ports)
	if token2, _ := os.ReadFile(filepath.Join(dataDir, "node-token")); !bytes.Equal(token, token2) {
		t.Error("the node token changed between runs")
	}
	g := addImage(up, "dev-private.qcow2", smallSize)
	var refused api.Image
	r2.api.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": g.url, "name": "dev-private", "checksum": g.sum, "pool_id": "local-1"},
		&refused, http.StatusAccepted)
	refused = waitAPIStatus(t, r2.api, refused.ID, "FAILED", time.Minute)
	if refused.Error == nil || refused.Error.Code != "url_forbidden" {
		t.Errorf("a loopback mirror without --allow-private-networks: error %+v, want url_forbidden", refused.Error)
	}
	if up.Requests(g.name) != 0 {
		t.Error("the agent fetched from a loopback mirror without --allow-private-networks")
	}

	// A child that dies takes the whole setup down, saying which and why,
	// rather than leaving a half-working one.
	children = childPids(t, r2.cmd.Process.Pid)
	agent := childWithArgs(t, children, "--node-id", "node-2")
	if err := syscall.Kill(agent, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r2.done:
	case <-time.After(time.Minute):
		t.Fatal("cloudimages dev still runs a minute after node-2's agent died")
	}
	if code := r2.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d after a child died, want 1", code)
	}
	if !strings.Contains(r2.out.String(), "node-2 exited on its own") {
		t.Errorf("the output does not say node-2 died:\n%s", r2.out.String())
	}
	for _, pid := range children {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("child %d is still there after cloudimages dev exited (%v)", pid, err)
		}
	}
}

// childWithArgs returns the one pid among pids whose command line holds
// these arguments in a row.
func childWithArgs(t *testing.T, pids []int, args ...string) int {
	t.Helper()
	want := strings.Join(args, "\x00")
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err == nil && strings.Contains(string(b), want) {
			return pid
		}
	}
	t.Fatalf("no child runs with %v", args)
	return 0
}

// checkDevRegistered checks dev's two nodes and three pools.
func checkDevRegistered(t *testing.T, api *testenv.APIClient, ports devPorts) {
	t.Helper()
	var nodes struct {
		Items []struct{ ID, Address string }
	}
	api.MustDo(t, http.MethodGet, "/v1/nodes", nil, &nodes, http.StatusOK)
	var got []string
	for _, n := range nodes.Items {
		got = append(got, n.ID+"@"+n.Address)
	}
	slices.Sort(got)
	want := []string{"node-1@127.0.0.1:" + ports.agent1, "node-2@127.0.0.1:" + ports.agent2}
	if !slices.Equal(got, want) {
		t.Errorf("nodes = %v, want %v", got, want)
	}
	var pools struct {
		Items []struct {
			ID      string
			Shared  bool
			NodeIDs []string `json:"node_ids"`
		}
	}
	api.MustDo(t, http.MethodGet, "/v1/pools", nil, &pools, http.StatusOK)
	var gotPools []string
	for _, p := range pools.Items {
		gotPools = append(gotPools, p.ID+":"+strconv.FormatBool(p.Shared)+":"+strings.Join(p.NodeIDs, "+"))
	}
	slices.Sort(gotPools)
	wantPools := []string{"local-1:false:node-1", "local-2:false:node-2", "shared-nfs:true:node-1+node-2"}
	if !slices.Equal(gotPools, wantPools) {
		t.Errorf("pools = %v, want %v", gotPools, wantPools)
	}
}

// syncBuffer is a bytes.Buffer safe for the writes of a process and the
// reads of a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevUsesARunningTemporalServer: with a Temporal server already at
// TEMPORAL_ADDRESS, dev uses it instead of starting one; and kill -9 of
// dev still leaves no child behind (the kernel tells them).
func TestDevUsesARunningTemporalServer(t *testing.T) {
	srv := testenv.StartDevServer(t)
	_, port, err := net.SplitHostPort(srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	dataDir, ports := t.TempDir(), freeDevPorts(t)
	ports.temporal = port
	r := startDev(t, dataDir, ports)
	if !strings.Contains(r.out.String(), "was already running") {
		t.Errorf("the welcome does not say it uses the running Temporal server:\n%s", r.out.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "logs", "temporal.log")); err == nil {
		t.Error("dev started a Temporal server although one was running")
	}
	children := childPids(t, r.cmd.Process.Pid)
	if len(children) != 4 {
		t.Errorf("cloudimages dev has %d children %v, want 4: two agents, worker, API", len(children), children)
	}
	checkDevRegistered(t, r.api, ports)

	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-r.done
	eventually(t, 30*time.Second, "the children of a killed cloudimages dev exit", func() bool {
		for _, pid := range children {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				return false
			}
		}
		return true
	})
	if _, err := srv.Client().CheckHealth(context.Background(), nil); err != nil {
		t.Errorf("the Temporal server dev found running does not answer after dev's exit: %v", err)
	}
}
