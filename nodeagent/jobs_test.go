package nodeagent_test

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

func TestSameIDSameRequestIs200AndDifferentIs409(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(1<<20, 1)
	url := h.up.AddFile("a.qcow2", data)
	h.up.SetFault("a.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
	req := agentclient.DownloadRequest{ID: "img-1", URL: url, PoolID: "pool-1", FileName: "a.qcow2", Checksum: testenv.SHA256(data)}

	status, body := rawRequest(t, http.MethodPost, h.http.URL+"/v1/downloads", testToken, mustJSON(t, req))
	if status != http.StatusAccepted {
		t.Fatalf("first POST: %d %s", status, body)
	}
	// The same request again, also with the checksum in upper case: 200, one job.
	again := req
	again.Checksum = "sha256:" + strings.ToUpper(req.Checksum[len("sha256:"):])
	status, body = rawRequest(t, http.MethodPost, h.http.URL+"/v1/downloads", testToken, mustJSON(t, again))
	if status != http.StatusOK || !strings.Contains(body, `"id":"img-1"`) {
		t.Fatalf("same request again: %d %s; want 200 with the job", status, body)
	}
	other := req
	other.FileName = "b.qcow2"
	if _, err := h.client.StartDownload(ctx(t), other); faultCode(err) != fault.Conflict {
		t.Fatalf("same id, other request: %v; want conflict", err)
	}
	// Another id writing the same file in the same pool is a conflict too.
	sameFile := req
	sameFile.ID = "img-2"
	if _, err := h.client.StartDownload(ctx(t), sameFile); faultCode(err) != fault.Conflict {
		t.Fatalf("other id, same file: %v; want conflict", err)
	}
	d := waitFinished(t, h.client, "img-1")
	assertPublished(t, d, h.pool, data, req.Checksum)
	if n := h.up.Requests("a.qcow2"); n != 1 {
		t.Errorf("mirror answered %d requests; the repeated POST must not start a second transfer", n)
	}
	if status, body := rawRequest(t, http.MethodGet, h.http.URL+"/v1/downloads", testToken, ""); status != 200 || strings.Count(body, `"id":`) != 1 || !strings.Contains(body, `"id":"img-1"`) {
		t.Errorf("list: %d %s; want the one download", status, body)
	}
	if _, err := h.client.Download(ctx(t), "unknown"); faultCode(err) != fault.NotFound {
		t.Errorf("unknown download: %v; want not_found", err)
	}
	// Once published, the same request answers 200 with the completed job.
	d, err := h.client.StartDownload(ctx(t), req)
	if err != nil || d.State != agentclient.StateCompleted {
		t.Fatalf("same request after completion: %+v %v", d, err)
	}
}

func TestConcurrentIdenticalRequestsMakeOneJob(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(512<<10, 2)
	url := h.up.AddFile("c.qcow2", data)
	req := agentclient.DownloadRequest{ID: "img-c", URL: url, PoolID: "pool-1", FileName: "c.qcow2", Checksum: testenv.SHA256(data)}
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := rawRequest(t, http.MethodPost, h.http.URL+"/v1/downloads", testToken, mustJSON(t, req))
			statuses <- status
		}()
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusAccepted] != 1 || count[http.StatusOK] != 19 {
		t.Fatalf("statuses %v; want one 202 and nineteen 200", count)
	}
	assertPublished(t, waitFinished(t, h.client, "img-c"), h.pool, data, req.Checksum)
	if n := h.up.Requests("c.qcow2"); n != 1 {
		t.Errorf("mirror answered %d requests, want 1", n)
	}
}

func TestCancelStopsTransferAndRemovesPartialData(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(4<<20, 3)
	url := h.up.AddFile("big.qcow2", data)
	h.up.SetFault("big.qcow2", testenv.Fault{BytesPerSecond: 512 << 10})
	h.start(agentclient.DownloadRequest{ID: "img-x", URL: url, FileName: "big.qcow2", Checksum: testenv.SHA256(data)})
	wait(t, h.client, "img-x", "under way", func(d agentclient.Download) bool { return d.BytesDone > 100_000 })
	part := filepath.Join(h.pool, agentclient.ImagesDir, ".downloads", "img-x~node-t.part")
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("no partial data while running: %v", err)
	}
	began := time.Now()
	if err := h.client.CancelDownload(ctx(t), "img-x"); err != nil {
		t.Fatal(err)
	}
	// It takes milliseconds; the bound leaves room for a loaded CI machine.
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("cancel took %v; want well under a second", took)
	}
	served := h.up.BytesServed("big.qcow2")
	d, err := h.client.Download(ctx(t), "img-x")
	if err != nil || d.State != agentclient.StateCancelled || d.Error == nil || d.Error.Code != fault.Cancelled {
		t.Fatalf("after cancel: %+v %v", d, err)
	}
	if _, err := os.Stat(part); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial data still there after cancel: %v", err)
	}
	assertNoPartial(t, h.pool, "")
	if _, err := os.Stat(d.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled download published its file")
	}
	// The transfer has really stopped: the connection is closed, so the
	// mirror's response ends (an agent that kept reading would take it to
	// the end of the file; one that stopped reading but kept the
	// connection would block it), with little sent after the cancel.
	deadline := time.Now().Add(10 * time.Second)
	for h.up.InFlight("big.qcow2") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("mirror still sending 10s after the cancel (%d bytes served)", h.up.BytesServed("big.qcow2"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if now := h.up.BytesServed("big.qcow2"); now > served+128<<10 {
		t.Errorf("mirror kept sending after cancel: %d → %d bytes", served, now)
	}
	// Cancelling again is fine; a download never seen is 404 (the client hides it).
	if status, _ := rawRequest(t, http.MethodDelete, h.http.URL+"/v1/downloads/img-x", testToken, ""); status != http.StatusNoContent {
		t.Errorf("second DELETE: %d, want 204", status)
	}
	if status, _ := rawRequest(t, http.MethodDelete, h.http.URL+"/v1/downloads/never", testToken, ""); status != http.StatusNotFound {
		t.Errorf("DELETE of an unknown download: %d, want 404", status)
	}
	// The same request again starts afresh, and completes.
	h.up.SetFault("big.qcow2", testenv.Fault{})
	h.start(agentclient.DownloadRequest{ID: "img-x", URL: url, FileName: "big.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, h.client, "img-x"), h.pool, data, testenv.SHA256(data))
}

func TestMaxConcurrentQueuesTheRest(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.MaxConcurrent = 1 })
	data := testenv.QCOW2Image(1<<20, 4)
	for _, name := range []string{"q1.qcow2", "q2.qcow2", "q3.qcow2"} {
		h.up.AddFile(name, data)
		h.up.SetFault(name, testenv.Fault{BytesPerSecond: 4 << 20})
	}
	h.up.SetFault("q1.qcow2", testenv.Fault{BytesPerSecond: 512 << 10}) // slow enough to look at the queue
	for _, name := range []string{"q1.qcow2", "q2.qcow2", "q3.qcow2"} {
		h.start(agentclient.DownloadRequest{ID: "id-" + strings.TrimSuffix(name, ".qcow2"), URL: h.up.FileURL(name), FileName: name, Checksum: testenv.SHA256(data)})
	}
	wait(t, h.client, "id-q1", "running", func(d agentclient.Download) bool { return d.State == agentclient.StateRunning && d.BytesDone > 0 })
	for _, id := range []string{"id-q2", "id-q3"} {
		if d, _ := h.client.Download(ctx(t), id); d.State != agentclient.StateQueued || d.BytesDone != 0 {
			t.Errorf("%s: %s with %d bytes while q1 runs; want queued", id, d.State, d.BytesDone)
		}
	}
	health, err := h.client.Health(ctx(t))
	if err != nil || health.ActiveDownloads != 3 {
		t.Errorf("health: %+v %v; want 3 active downloads", health, err)
	}
	metrics := scrape(t, h.http.URL)
	for _, want := range []string{"cloudimages_nodeagent_downloads_active 1", "cloudimages_nodeagent_downloads_queued 2"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Never more than one transfer at once, and all of them complete.
	for _, id := range []string{"id-q1", "id-q2", "id-q3"} {
		for {
			running := 0
			for _, other := range []string{"id-q1", "id-q2", "id-q3"} {
				if d, _ := h.client.Download(ctx(t), other); d.State == agentclient.StateRunning {
					running++
				}
			}
			if running > 1 {
				t.Fatalf("%d downloads running with --max-concurrent 1", running)
			}
			if d, _ := h.client.Download(ctx(t), id); d.Finished() {
				assertPublished(t, d, h.pool, data, testenv.SHA256(data))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestCancelQueuedDownload(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.MaxConcurrent = 1 })
	data := testenv.QCOW2Image(1<<20, 5)
	h.up.AddFile("slow.qcow2", data)
	h.up.SetFault("slow.qcow2", testenv.Fault{BytesPerSecond: 512 << 10})
	h.up.AddFile("next.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "first", URL: h.up.FileURL("slow.qcow2"), FileName: "slow.qcow2"})
	h.start(agentclient.DownloadRequest{ID: "second", URL: h.up.FileURL("next.qcow2"), FileName: "next.qcow2"})
	if err := h.client.CancelDownload(ctx(t), "second"); err != nil {
		t.Fatal(err)
	}
	if d, _ := h.client.Download(ctx(t), "second"); d.State != agentclient.StateCancelled {
		t.Fatalf("queued download after cancel: %s", d.State)
	}
	assertPublished(t, waitFinished(t, h.client, "first"), h.pool, data, testenv.SHA256(data))
	if n := h.up.Requests("next.qcow2"); n != 0 {
		t.Errorf("a cancelled queued download reached the mirror %d times", n)
	}
}

func TestDeleteFile(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(100_000, 6)
	url := h.up.AddFile("del.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "del", URL: url, FileName: "del.qcow2"})
	d := waitFinished(t, h.client, "del")
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	if err := h.client.DeleteFile(ctx(t), "pool-1", "del.qcow2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file still there after DeleteFile: %v", err)
	}
	if status, body := rawRequest(t, http.MethodDelete, h.http.URL+"/v1/pools/pool-1/files/del.qcow2", testToken, ""); status != http.StatusNotFound || !strings.Contains(body, fault.NotFound) {
		t.Errorf("deleting a missing file: %d %s", status, body)
	}
	if status, body := rawRequest(t, http.MethodDelete, h.http.URL+"/v1/pools/nope/files/del.qcow2", testToken, ""); status != http.StatusNotFound || !strings.Contains(body, fault.PoolNotFound) {
		t.Errorf("deleting in an unknown pool: %d %s", status, body)
	}
	if err := h.client.DeleteFile(ctx(t), "pool-1", "del.qcow2"); err != nil {
		t.Errorf("client: deleting a file that is gone must be fine: %v", err)
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	status, body := rawRequest(t, http.MethodGet, base+"/metrics", testToken, "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	return body
}

func TestMetricsCountBytesAndFailures(t *testing.T) {
	h := newHarness(t, nil)
	good := testenv.QCOW2Image(300_000, 7)
	h.up.AddFile("good.qcow2", good)
	h.up.AddFile("bad.qcow2", good)
	h.up.SetFault("bad.qcow2", testenv.Fault{WrongBytes: true})
	h.start(agentclient.DownloadRequest{ID: "good", URL: h.up.FileURL("good.qcow2"), FileName: "good.qcow2", Checksum: testenv.SHA256(good)})
	h.start(agentclient.DownloadRequest{ID: "bad", URL: h.up.FileURL("bad.qcow2"), FileName: "bad.qcow2", Checksum: testenv.SHA256(good)})
	waitFinished(t, h.client, "good")
	waitFinished(t, h.client, "bad")
	wants := []string{
		"cloudimages_nodeagent_downloaded_bytes_total 600000",
		`cloudimages_nodeagent_download_failures_total{code="checksum_mismatch"} 1`,
		"cloudimages_nodeagent_downloads_completed_total 1",
		"cloudimages_nodeagent_downloads_active 0",
		"process_resident_memory_bytes",
		`cloudimages_nodeagent_pool_free_bytes{pool_id="pool-1"}`,
	}
	// A job's state says finished a moment before its goroutine counts it
	// and lets go of its slot: scrape until the counters caught up, then
	// judge (a counter that never moves still fails).
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m := scrape(t, h.http.URL)
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(m, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("metrics lack %q", want)
	}
}

func TestCloseLeavesJobsToResume(t *testing.T) {
	dir := t.TempDir()
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(3<<20, 8)
	url := up.AddFile("r.qcow2", data)
	up.SetFault("r.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
	cfg := nodeagent.Config{NodeID: "n", Token: testToken, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true, RetryBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := newServer(t, srv)
	c := agentclient.New(hs, testToken)
	if _, err := c.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "r", URL: url, PoolID: "pool-1", FileName: "r.qcow2", Checksum: testenv.SHA256(data)}); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "r", "half done", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	srv.Close()
	up.SetFault("r.qcow2", testenv.Fault{})

	srv2, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	c2 := agentclient.New(newServer(t, srv2), testToken)
	d := waitFinished(t, c2, "r")
	assertPublished(t, d, dir, data, testenv.SHA256(data))
	if served := up.BytesServed("r.qcow2"); served > int64(len(data))+int64(len(data))/4 {
		t.Errorf("mirror served %d bytes for a %d-byte file: the restart did not resume", served, len(data))
	}
}

// TestDeleteFileRefusesWhatIsNotAFinishedImage: a file a download is still
// writing is a conflict (the download goes on and publishes), and a
// directory in the images folder is not an image (it stays).
func TestDeleteFileRefusesWhatIsNotAFinishedImage(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(2<<20, 9)
	url := h.up.AddFile("busy.qcow2", data)
	h.up.SetFault("busy.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	h.start(agentclient.DownloadRequest{ID: "busy", URL: url, FileName: "busy.qcow2", Checksum: testenv.SHA256(data)})
	wait(t, h.client, "busy", "under way", func(d agentclient.Download) bool { return d.BytesDone > 0 })
	if err := h.client.DeleteFile(ctx(t), "pool-1", "busy.qcow2"); faultCode(err) != fault.Conflict {
		t.Fatalf("DeleteFile while the download writes it: %v; want conflict", err)
	}
	part := filepath.Join(h.pool, agentclient.ImagesDir, ".downloads", "busy~node-t.part")
	if _, err := os.Stat(part); err != nil {
		t.Errorf("the refused delete touched the partial data: %v", err)
	}
	assertPublished(t, waitFinished(t, h.client, "busy"), h.pool, data, testenv.SHA256(data))

	dir := filepath.Join(h.pool, agentclient.ImagesDir, "adir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.client.DeleteFile(ctx(t), "pool-1", "adir"); faultCode(err) != fault.InvalidRequest {
		t.Errorf("DeleteFile of a directory: %v; want invalid_request", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("the directory is gone after a refused delete: %v", err)
	}
}
