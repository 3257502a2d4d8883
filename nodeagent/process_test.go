package nodeagent_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestKilledAgentResumesAfterRestart is the crash test: the agent process
// gets SIGKILL in the middle of a download; started again, it picks the
// job up from its checkpoint, and the mirror serves well under twice the file.
func TestKilledAgentResumesAfterRestart(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(6<<20, 42)
	url := up.AddFile("crash.qcow2", data)
	// 4 s for the whole file: time to see it half done and kill it first.
	up.SetFault("crash.qcow2", testenv.Fault{BytesPerSecond: 3 << 19})
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true, Env: []string{"CLOUDIMAGES_RETRY_BACKOFF=50ms"}})
	c := agent.Client()
	req := agentclient.DownloadRequest{ID: "crash", URL: url, PoolID: "pool-1", FileName: "crash.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "crash", "half done", func(d agentclient.Download) bool { return d.BytesDone > 3<<20 })
	agent.Kill()
	if _, err := c.Health(ctx(t)); faultCode(err) != fault.NodeUnreachable {
		t.Fatalf("killed agent still answers: %v", err)
	}
	servedBeforeRestart := up.BytesServed("crash.qcow2")
	up.SetFault("crash.qcow2", testenv.Fault{})

	agent.Restart()
	d := waitFinished(t, c, "crash")
	assertPublished(t, d, agent.PoolDir("pool-1"), data, req.Checksum)
	served := up.BytesServed("crash.qcow2")
	t.Logf("mirror served %d bytes before the kill, %d in all, for a %d-byte file", servedBeforeRestart, served, len(data))
	// Starting again from zero would make it at least 1.5 times the file.
	if served >= int64(len(data))*145/100 {
		t.Errorf("mirror served %d bytes for a %d-byte file: the restarted agent did not resume", served, len(data))
	}
	if up.Requests("crash.qcow2") < 2 {
		t.Errorf("mirror saw %d requests; the restart must have asked for the rest", up.Requests("crash.qcow2"))
	}

	// The finished job is still known after another restart.
	agent.Restart()
	if d, err := c.Download(ctx(t), "crash"); err != nil || d.State != agentclient.StateCompleted || d.Checksum != req.Checksum {
		t.Fatalf("after a restart: %+v %v; want the completed download", d, err)
	}
	if d, err := c.StartDownload(ctx(t), req); err != nil || d.State != agentclient.StateCompleted {
		t.Fatalf("same request after a restart: %+v %v; want 200 with the completed download", d, err)
	}
}

// TestStoppedAgentCheckpointsAndResumes: SIGTERM stops the agent promptly,
// saving where each download stood; the next start goes on from there.
func TestStoppedAgentCheckpointsAndResumes(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 43)
	url := up.AddFile("term.img", data)
	up.SetFault("term.img", testenv.Fault{BytesPerSecond: 2 << 20})
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true, MaxConcurrent: 1})
	c := agent.Client()
	if _, err := c.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "term", URL: url, PoolID: "pool-1", FileName: "term.img"}); err != nil {
		t.Fatal(err)
	}
	before := wait(t, c, "term", "under way", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	began := time.Now()
	agent.Stop()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("SIGTERM took %v to stop the agent", took)
	}
	up.SetFault("term.img", testenv.Fault{})
	agent.Restart()
	d := waitFinished(t, c, "term")
	assertPublished(t, d, agent.PoolDir("pool-1"), data, testenv.SHA256(data))
	if served := up.BytesServed("term.img"); served > int64(len(data))+int64(len(data))/5 {
		t.Errorf("mirror served %d bytes for a %d-byte file (stopped at %d): the graceful stop lost the progress", served, len(data), before.BytesDone)
	}
}

// TestAgentProcessRefusesLoopbackByDefault: without --allow-private-networks
// a mirror on 127.0.0.1 is url_forbidden, and not worth a retry.
func TestAgentProcessRefusesLoopbackByDefault(t *testing.T) {
	up := testenv.NewUpstream(t)
	url := up.AddFile("x.qcow2", testenv.QCOW2Image(1000, 1))
	agent := testenv.StartAgent(t, testenv.AgentOptions{})
	_, err := agent.Client().StartDownload(ctx(t), agentclient.DownloadRequest{ID: "x", URL: url, PoolID: "pool-1", FileName: "x.qcow2"})
	fe, ok := fault.As(err)
	if !ok || fe.Code != fault.URLForbidden || fe.Retryable {
		t.Fatalf("loopback URL: %v; want url_forbidden, not retryable", err)
	}
	if up.Requests("x.qcow2") != 0 {
		t.Error("the refused mirror got a request")
	}
}

func TestAgentCommandLine(t *testing.T) {
	bin := testenv.Binary(t)
	pool := "--pool=p=" + t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"nodeagent", "--node-token", "t", pool}, "--node-id is required"},
		{[]string{"nodeagent", "--node-id", "n", pool}, "--node-token is required"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t"}, "at least one --pool"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t", "--pool", "nodir"}, "want ID=DIR"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t", pool, "--max-concurrent", "0"}, "--max-concurrent must be at least 1"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t", pool, "--max-image-size", "lots"}, "--max-image-size"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t", pool, "--min-free", "120%"}, "--min-free"},
		{[]string{"nodeagent", "--node-id", "n", "--node-token", "t", pool, "--retry-backoff", "0s"}, "must be positive"},
	}
	for _, tc := range cases {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: %v, stderr %q; want exit 2 saying %q", tc.args, err, stderr.String(), tc.want)
		}
	}
	out, err := exec.Command(bin, "nodeagent", "--help").CombinedOutput()
	for _, flag := range []string{"--allow-private-networks", "CLOUDIMAGES_POOLS", "--retry-backoff", "--stall-timeout", "--max-attempts"} {
		if err != nil || !strings.Contains(string(out), flag) {
			t.Errorf("nodeagent --help does not document %s (%v)", flag, err)
		}
	}
}

// TestSharedPoolFailoverResumesPartialData: two agents see the same pool
// directory (NFS). The first is killed mid-download; the same download
// (same id) started on the second takes over the partial data.
func TestSharedPoolFailoverResumesPartialData(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(6<<20, 44)
	url := up.AddFile("shared.qcow2", data)
	up.SetFault("shared.qcow2", testenv.Fault{BytesPerSecond: 3 << 19})
	shared := []nodeagent.PoolDir{{ID: "nfs-01", Dir: t.TempDir()}}
	a := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-a", Pools: shared, AllowPrivateNetworks: true})
	b := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-b", Pools: shared, AllowPrivateNetworks: true})
	req := agentclient.DownloadRequest{ID: "img-shared", URL: url, PoolID: "nfs-01", FileName: "shared.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := a.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, a.Client(), req.ID, "half done", func(d agentclient.Download) bool { return d.BytesDone > 3<<20 })
	a.Kill()
	up.SetFault("shared.qcow2", testenv.Fault{})

	started, err := b.Client().StartDownload(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if started.BytesDone == 0 {
		t.Errorf("node-b started from zero; want it to take over node-a's partial data")
	}
	d := waitFinished(t, b.Client(), req.ID)
	assertPublished(t, d, shared[0].Dir, data, req.Checksum)
	if served := up.BytesServed("shared.qcow2"); served >= int64(len(data))*145/100 {
		t.Errorf("mirror served %d bytes for a %d-byte file: node-b did not resume", served, len(data))
	}
}

// TestCancelOnAnotherNodeRemovesSharedPartialData: the node that took
// over a download is not always the one asked to cancel it.
func TestCancelOnAnotherNodeRemovesSharedPartialData(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 45)
	url := up.AddFile("c.qcow2", data)
	up.SetFault("c.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
	shared := []nodeagent.PoolDir{{ID: "nfs-01", Dir: t.TempDir()}}
	a := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-a", Pools: shared, AllowPrivateNetworks: true})
	b := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-b", Pools: shared, AllowPrivateNetworks: true})
	req := agentclient.DownloadRequest{ID: "img-c", URL: url, PoolID: "nfs-01", FileName: "c.qcow2"}
	if _, err := a.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, a.Client(), req.ID, "under way", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	a.Kill()
	if err := b.Client().CancelDownload(ctx(t), req.ID); err != nil {
		t.Fatal(err)
	}
	assertNoPartial(t, shared[0].Dir, "")
}

// TestRestartedNodeLeavesATakenOverJobAlone: after a failover, the first
// node coming back must not resume the job the second one now runs.
func TestRestartedNodeLeavesATakenOverJobAlone(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 46)
	url := up.AddFile("t.qcow2", data)
	up.SetFault("t.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
	shared := []nodeagent.PoolDir{{ID: "nfs-01", Dir: t.TempDir()}}
	a := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-a", Pools: shared, AllowPrivateNetworks: true})
	b := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-b", Pools: shared, AllowPrivateNetworks: true})
	req := agentclient.DownloadRequest{ID: "img-t", URL: url, PoolID: "nfs-01", FileName: "t.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := a.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, a.Client(), req.ID, "under way", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	a.Kill()
	if _, err := b.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	a.Restart()
	if _, err := a.Client().Download(ctx(t), req.ID); faultCode(err) != fault.NotFound {
		t.Errorf("restarted node-a knows the download node-b took over: %v", err)
	}
	up.SetFault("t.qcow2", testenv.Fault{})
	assertPublished(t, waitFinished(t, b.Client(), req.ID), shared[0].Dir, data, req.Checksum)
}

// TestFrozenAgentWokenAfterTakeoverIsFenced: node-a is frozen (SIGSTOP)
// mid-download on a shared pool; node-b takes the download over and
// publishes it. Woken, node-a goes on reading its response, but it writes
// only into its own partial file, and at its next checkpoint it finds the
// job is node-b's and stops: it publishes nothing, and the published file
// stays intact and verified.
func TestFrozenAgentWokenAfterTakeoverIsFenced(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(6<<20, 47)
	url := up.AddFile("fence.qcow2", data)
	up.SetFault("fence.qcow2", testenv.Fault{BytesPerSecond: 512 << 10}) // 12 s for the whole file
	shared := []nodeagent.PoolDir{{ID: "nfs-01", Dir: t.TempDir()}}
	a := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-a", Pools: shared, AllowPrivateNetworks: true})
	b := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-b", Pools: shared, AllowPrivateNetworks: true})
	req := agentclient.DownloadRequest{ID: "img-fence", URL: url, PoolID: "nfs-01", FileName: "fence.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := a.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, a.Client(), req.ID, "past a checkpoint", func(d agentclient.Download) bool { return d.BytesDone > 1536<<10 })
	if err := syscall.Kill(a.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	woken := false
	wake := func() {
		if !woken {
			woken = true
			_ = syscall.Kill(a.Pid(), syscall.SIGCONT)
		}
	}
	t.Cleanup(wake)
	up.SetFault("fence.qcow2", testenv.Fault{}) // new requests (node-b's) are fast

	if _, err := b.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	published := filepath.Join(shared[0].Dir, agentclient.ImagesDir, "fence.qcow2")
	assertPublished(t, waitFinished(t, b.Client(), req.ID), shared[0].Dir, data, req.Checksum)

	wake()
	wokeAt := time.Now()
	d := waitFinished(t, a.Client(), req.ID)
	t.Logf("node-a ended %v after it was woken: %s %+v", time.Since(wokeAt), d.State, d.Error)
	if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.Conflict || !strings.Contains(d.Error.Message, "another node took") {
		t.Fatalf("woken node-a: %s %+v; want failed with conflict, taken over by another node", d.State, d.Error)
	}
	// Its old response still had about 8 s to run: it stopped at its
	// first checkpoint instead.
	if took := time.Since(wokeAt); took > 5*time.Second {
		t.Errorf("woken node-a went on for %v before it stopped", took)
	}
	got, err := os.ReadFile(published)
	if err != nil || testenv.SHA256(got) != req.Checksum {
		t.Fatalf("published file after node-a woke: %d bytes, %v; want it intact", len(got), err)
	}
	assertNoPartial(t, shared[0].Dir, "")
	if d, err := b.Client().Download(ctx(t), req.ID); err != nil || d.State != agentclient.StateCompleted {
		t.Errorf("node-b's download after node-a woke: %+v %v", d, err)
	}
}
