package workers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// TestTransferWindowClosingMidDownloadPausesAndResumesAtTheNext runs on
// the real clock: the pool's window (UTC, minute granularity) closes at
// the next minute boundary at least 20 s away, while the mirror trickles
// the file; the next window opens a minute later. The node's job is
// paused with its partial data, the image waits PENDING until the next
// window, then the job resumes from the partial file: READY, and the
// mirror served about the file once. It takes two to three minutes.
func TestTransferWindowClosingMidDownloadPausesAndResumesAtTheNext(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real minute boundaries")
	}
	srv := testenv.StartDevServer(t)
	now := time.Now().UTC()
	closes := now.Truncate(time.Minute).Add(time.Minute)
	if closes.Sub(now) < 20*time.Second {
		closes = closes.Add(time.Minute) // time to start the transfer first
	}
	opens := closes.Add(time.Minute)
	hm := func(t time.Time) string { return t.Format("15:04") }
	windows := []string{hm(closes.Add(-10*time.Minute)) + "-" + hm(closes), hm(opens) + "-" + hm(opens.Add(30*time.Minute))}
	t.Logf("now %s; windows %v (UTC)", now.Format("15:04:05"), windows)

	// 8 MiB at 64 KiB/s takes two minutes: well past the window's end.
	size := 8 << 20
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: size, rate: 64 << 10, windows: windows})
	id := "windowed"
	run := w.startDownload(id)
	w.waitRecord(id, func(img store.Image) bool { return img.Status == store.StatusDownloading && img.BytesDone > 0 })
	if time.Now().After(closes) {
		t.Fatalf("the transfer started only after the window closed at %s: the machine is too slow for this test", closes.Format("15:04:05"))
	}

	// The window closes: the job is paused on the node, its partial data kept.
	paused := waitRecordFor(t, w, id, 2*time.Minute, func(img store.Image) bool {
		return img.Status == store.StatusPending && img.WaitingUntil != nil
	})
	if !paused.WaitingUntil.Equal(opens) || !strings.Contains(paused.WaitingMessage, "until "+opens.Format("2006-01-02 15:04")+" UTC") {
		t.Fatalf("paused image waits until %s (%q), want %s", paused.WaitingUntil, paused.WaitingMessage, opens)
	}
	if time.Now().Before(closes) {
		t.Fatalf("paused at %s, before the window closed at %s", time.Now().Format("15:04:05"), closes.Format("15:04:05"))
	}
	job, err := w.agents["node-1"].Client().Download(context.Background(), id)
	if err != nil || job.State != agentclient.StatePaused || job.BytesDone <= 0 || job.BytesDone >= int64(size) {
		t.Fatalf("node's job while the window is closed: %+v %v; want paused mid-file", job, err)
	}
	parts, _ := filepath.Glob(filepath.Join(w.agents["node-1"].PoolDir(poolID), agentclient.ImagesDir, ".downloads", id+"~*.part"))
	if len(parts) != 1 {
		t.Fatalf("partial data while paused: %v, want one file", parts)
	}
	if fi, err := os.Stat(parts[0]); err != nil || fi.Size() < job.BytesDone {
		t.Fatalf("partial file while paused: %v %v, want at least %d bytes", fi, err, job.BytesDone)
	}
	s := w.progress(workflows.WorkflowID(id))
	if s.Status != store.StatusPending || s.Progress.WaitingUntil == nil || !s.Progress.WaitingUntil.Equal(opens) || s.Progress.Message == "" {
		t.Fatalf("progress query while paused = %+v", s)
	}
	servedAtPause := w.up.BytesServed(imageFile)
	t.Logf("paused at %d of %d bytes (mirror had served %d)", job.BytesDone, size, servedAtPause)

	// The next window: full speed now, so the test ends soon after.
	w.up.SetFault(imageFile, testenv.Fault{})
	res := w.result(run)
	img := w.checkReady(id, res)
	if img.WaitingUntil != nil || img.WaitingMessage != "" {
		t.Fatalf("READY image still waits: %v %q", img.WaitingUntil, img.WaitingMessage)
	}
	if img.ReadyAt.Before(opens) {
		t.Fatalf("READY at %s, before the next window opened at %s", img.ReadyAt, opens)
	}
	served := w.up.BytesServed(imageFile)
	t.Logf("mirror served %d bytes for a %d-byte file", served, size)
	if served > int64(size)*11/10 {
		t.Fatalf("mirror served %d bytes for a %d-byte file: the resume fetched bytes again", served, size)
	}
	if s := w.progress(workflows.WorkflowID(id)); len(s.Failovers) != 0 || s.Progress.Attempt != 1 {
		t.Fatalf("progress = %+v: the pause was not a failover", s)
	}
	recordHistory(t, srv, workflows.WorkflowID(id), "transfer-window.json")
}

// waitRecordFor polls the image record until ok says yes, for up to d.
func waitRecordFor(t *testing.T, w *world, imageID string, d time.Duration, ok func(store.Image) bool) store.Image {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		img, err := w.store.Image(context.Background(), imageID)
		if err == nil && ok(img) {
			return img
		}
		time.Sleep(100 * time.Millisecond)
	}
	img, _ := w.store.Image(context.Background(), imageID)
	t.Fatalf("image %s: the record never got there in %s: %+v", imageID, d, img)
	return store.Image{}
}
