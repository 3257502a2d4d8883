package nodeagent_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// partialSize is the size of a download's partial file in a pool, -1 when
// there is none.
func partialSize(t *testing.T, poolDir, id string) int64 {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(poolDir, agentclient.ImagesDir, ".downloads", id+"~*.part"))
	if len(parts) == 0 {
		return -1
	}
	fi, err := os.Stat(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestPausedDownloadKeepsItsPartialAndResumesFromIt: a pause stops the
// transfer and keeps the partial file, a restart of the agent leaves the
// job paused, and the same request started again goes on from the partial
// file: the mirror serves about the file once.
func TestPausedDownloadKeepsItsPartialAndResumesFromIt(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(6<<20, 61)
	url := up.AddFile("pause.qcow2", data)
	up.SetFault("pause.qcow2", testenv.Fault{BytesPerSecond: 3 << 19})
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true})
	c := agent.Client()
	pool := agent.PoolDir("pool-1")
	h, err := c.Health(ctx(t))
	if err != nil || !slices.Contains(h.Features, agentclient.FeaturePause) {
		t.Fatalf("health features %v (%v): want %q", h.Features, err, agentclient.FeaturePause)
	}
	req := agentclient.DownloadRequest{ID: "pause", URL: url, PoolID: "pool-1", FileName: "pause.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "pause", "a third done", func(d agentclient.Download) bool { return d.BytesDone > 2<<20 })

	d, err := c.PauseDownload(ctx(t), "pause")
	if err != nil || d.State != agentclient.StatePaused || d.BytesDone < 2<<20 {
		t.Fatalf("pause: %+v %v; want paused with the bytes done so far", d, err)
	}
	if got := partialSize(t, pool, "pause"); got < d.BytesDone {
		t.Fatalf("partial file holds %d bytes after the pause, want at least the %d done", got, d.BytesDone)
	}
	// The transfer has stopped: no response is in flight from the mirror.
	waitCond(t, "the mirror to stop sending", func() bool { return up.InFlight("pause.qcow2") == 0 })
	if again, err := c.PauseDownload(ctx(t), "pause"); err != nil || again.State != agentclient.StatePaused {
		t.Fatalf("second pause: %+v %v; want the paused download again", again, err)
	}
	if h, err := c.Health(ctx(t)); err != nil || h.ActiveDownloads != 0 {
		t.Fatalf("health while paused: %+v %v; want no active downloads", h, err)
	}

	// A restarted agent keeps it paused: only a start resumes it.
	agent.Restart()
	if d, err := c.Download(ctx(t), "pause"); err != nil || d.State != agentclient.StatePaused {
		t.Fatalf("after a restart: %+v %v; want it still paused", d, err)
	}
	requests := up.Requests("pause.qcow2")
	if got := partialSize(t, pool, "pause"); got < d.BytesDone {
		t.Fatalf("partial file holds %d bytes after a restart, want at least %d", got, d.BytesDone)
	}

	up.SetFault("pause.qcow2", testenv.Fault{})
	resumed, err := c.StartDownload(ctx(t), req)
	if err != nil || resumed.BytesDone < d.BytesDone {
		t.Fatalf("start after the pause: %+v %v; want it to go on from %d bytes", resumed, err, d.BytesDone)
	}
	fin := waitFinished(t, c, "pause")
	assertPublished(t, fin, pool, data, req.Checksum)
	served := up.BytesServed("pause.qcow2")
	t.Logf("mirror served %d bytes for a %d-byte file paused at %d", served, len(data), d.BytesDone)
	if served > int64(len(data))*11/10 {
		t.Errorf("mirror served %d bytes for a %d-byte file: the resume fetched bytes again", served, len(data))
	}
	if up.Requests("pause.qcow2") != requests+1 {
		t.Errorf("mirror saw %d requests after the resume, want one more than %d", up.Requests("pause.qcow2"), requests)
	}
	// A finished download has nothing to pause.
	if _, err := c.PauseDownload(ctx(t), "pause"); faultCode(err) != fault.Conflict {
		t.Fatalf("pause of a completed download: %v, want conflict", err)
	}
	if _, err := c.PauseDownload(ctx(t), "nobody"); faultCode(err) != fault.NotFound {
		t.Fatalf("pause of an unknown download: %v, want not_found", err)
	}
}

// TestCancelOfAPausedDownloadRemovesItsPartial: cancel, unlike pause,
// leaves nothing, also for a paused job (before and after a restart).
func TestCancelOfAPausedDownloadRemovesItsPartial(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 62)
	url := up.AddFile("gone.qcow2", data)
	up.SetFault("gone.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true})
	c := agent.Client()
	pool := agent.PoolDir("pool-1")
	for _, restart := range []bool{false, true} {
		req := agentclient.DownloadRequest{ID: "gone", URL: url, PoolID: "pool-1", FileName: "gone.qcow2", Checksum: testenv.SHA256(data)}
		if _, err := c.StartDownload(ctx(t), req); err != nil {
			t.Fatal(err)
		}
		wait(t, c, "gone", "under way", func(d agentclient.Download) bool { return d.State == agentclient.StateRunning && d.BytesDone > 256<<10 })
		if d, err := c.PauseDownload(ctx(t), "gone"); err != nil || d.State != agentclient.StatePaused {
			t.Fatalf("pause: %+v %v", d, err)
		}
		if partialSize(t, pool, "gone") <= 0 {
			t.Fatal("no partial data after the pause")
		}
		if restart {
			agent.Restart()
		}
		if err := c.CancelDownload(ctx(t), "gone"); err != nil {
			t.Fatalf("cancel of a paused download (restart %v): %v", restart, err)
		}
		if d, err := c.Download(ctx(t), "gone"); err != nil || d.State != agentclient.StateCancelled {
			t.Fatalf("after the cancel: %+v %v; want cancelled", d, err)
		}
		assertNoPartial(t, pool, "gone")
	}
}

// waitCond polls cond until it holds (30 s at most).
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
