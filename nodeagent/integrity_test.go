package nodeagent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestPlantedRecordTempLinkCannotOverwriteAnImage: a symlink planted where
// the record's temporary file used to be written (a fixed name) points at
// a published image; saving the record must never write through it.
func TestPlantedRecordTempLinkCannotOverwriteAnImage(t *testing.T) {
	h := newHarness(t, nil)
	images := filepath.Join(h.pool, agentclient.ImagesDir)
	published := filepath.Join(images, "vm-disk.qcow2")
	if err := os.WriteFile(published, []byte("a VM's disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".rec.json.tmp", ".rec.tmp"} {
		if err := os.Symlink("../vm-disk.qcow2", filepath.Join(images, ".downloads", name)); err != nil {
			t.Fatal(err)
		}
	}
	data := testenv.QCOW2Image(200_000, 3)
	url := h.up.AddFile("rec.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "rec", URL: url, FileName: "rec.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, h.client, "rec"), h.pool, data, testenv.SHA256(data))
	if got, err := os.ReadFile(published); err != nil || !bytes.Equal(got, []byte("a VM's disk")) {
		t.Fatalf("the image behind the planted link changed: %q %v", got, err)
	}
	tmps, _ := filepath.Glob(filepath.Join(images, ".downloads", ".rec.*.tmp"))
	if len(tmps) != 1 { // the planted .rec.json.tmp only
		t.Errorf("temporary record files left: %v", tmps)
	}
}

// TestPublishNeverReplacesAFile: a file that appears under the published
// name while a download runs (another download's, or a VM disk an
// operator put there) stays; the download fails with conflict. Both ways
// of publishing are tried: renameat2(RENAME_NOREPLACE), and link + unlink
// as used where the file system refuses that flag.
func TestPublishNeverReplacesAFile(t *testing.T) {
	for _, linkOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "rename noreplace", true: "link and unlink"}[linkOnly], func(t *testing.T) {
			h := newHarness(t, nil)
			nodeagent.SetLinkPublish(h.srv, linkOnly)
			data := testenv.QCOW2Image(1<<20, 4)
			url := h.up.AddFile("race.qcow2", data)
			h.up.SetFault("race.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
			h.start(agentclient.DownloadRequest{ID: "race", URL: url, FileName: "race.qcow2", Checksum: testenv.SHA256(data)})
			wait(t, h.client, "race", "under way", func(d agentclient.Download) bool { return d.BytesDone > 0 })
			target := filepath.Join(h.pool, agentclient.ImagesDir, "race.qcow2")
			if err := os.WriteFile(target, []byte("someone else's image"), 0o644); err != nil {
				t.Fatal(err)
			}
			d := waitFinished(t, h.client, "race")
			if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.Conflict || d.Error.Retryable {
				t.Fatalf("download over an existing file: %s %+v; want failed with conflict", d.State, d.Error)
			}
			if got, err := os.ReadFile(target); err != nil || string(got) != "someone else's image" {
				t.Fatalf("the existing file was replaced: %q %v", got, err)
			}
			assertNoPartial(t, h.pool, "race")

			// Published normally when the name is free.
			other := testenv.QCOW2Image(300_000, 5)
			h.start(agentclient.DownloadRequest{ID: "free", URL: h.up.AddFile("free.qcow2", other), FileName: "free.qcow2", Checksum: testenv.SHA256(other)})
			assertPublished(t, waitFinished(t, h.client, "free"), h.pool, other, testenv.SHA256(other))
		})
	}
}

// TestStartRefusesANameThatIsTaken: a request to publish under a name the
// pool already holds is refused up front, naming the download that
// published it, before a byte is fetched.
func TestStartRefusesANameThatIsTaken(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(200_000, 6)
	url := h.up.AddFile("t.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "first", URL: url, FileName: "t.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, h.client, "first"), h.pool, data, testenv.SHA256(data))
	_, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "second", URL: url, PoolID: "pool-1", FileName: "t.qcow2", Checksum: testenv.SHA256(data)})
	if fe, ok := fault.As(err); !ok || fe.Code != fault.Conflict || !strings.Contains(fe.Message, "download first") {
		t.Fatalf("second download of a published name: %v; want conflict naming download first", err)
	}
	if _, err := h.client.Download(ctx(t), "second"); faultCode(err) != fault.NotFound {
		t.Errorf("a refused request left a job: %v", err)
	}
	if n := h.up.Requests("t.qcow2"); n != 1 {
		t.Errorf("mirror saw %d requests; the refused download must not fetch", n)
	}
}

// TestRemovedFileIsNotReportedCompleted: once the published file is
// removed through the agent, the job is forgotten (404) and the same
// request downloads the image again instead of answering "completed" for
// a file that is gone.
func TestRemovedFileIsNotReportedCompleted(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(200_000, 7)
	req := agentclient.DownloadRequest{ID: "gone", URL: h.up.AddFile("gone.qcow2", data), FileName: "gone.qcow2", Checksum: testenv.SHA256(data)}
	h.start(req)
	assertPublished(t, waitFinished(t, h.client, "gone"), h.pool, data, req.Checksum)
	if err := h.client.DeleteFile(ctx(t), "pool-1", "gone.qcow2"); err != nil {
		t.Fatal(err)
	}
	if d, err := h.client.Download(ctx(t), "gone"); faultCode(err) != fault.NotFound {
		t.Fatalf("job of a removed file: %+v %v; want not_found", d, err)
	}
	if d := h.start(req); d.State == agentclient.StateCompleted {
		t.Fatalf("same request after the file was removed: %s; want a new download", d.State)
	}
	assertPublished(t, waitFinished(t, h.client, "gone"), h.pool, data, req.Checksum)
	if n := h.up.Requests("gone.qcow2"); n != 2 {
		t.Errorf("mirror saw %d requests, want 2", n)
	}
}

// TestFileRemovedBehindTheAgentsBackIsDownloadedAgain: a file removed
// while the agent was down (rm in the pool) is noticed after the
// restart: the same request downloads it again.
func TestFileRemovedBehindTheAgentsBackIsDownloadedAgain(t *testing.T) {
	dir := t.TempDir()
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(200_000, 8)
	req := agentclient.DownloadRequest{ID: "rm", URL: up.AddFile("rm.qcow2", data), PoolID: "pool-1", FileName: "rm.qcow2", Checksum: testenv.SHA256(data)}
	cfg := nodeagent.Config{NodeID: "n", Token: testToken, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := agentclient.New(newServer(t, srv), testToken)
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, c, "rm")
	assertPublished(t, d, dir, data, req.Checksum)
	srv.Close()
	if err := os.Remove(d.Path); err != nil {
		t.Fatal(err)
	}

	srv2, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	c2 := agentclient.New(newServer(t, srv2), testToken)
	if d, err := c2.StartDownload(ctx(t), req); err != nil || d.State == agentclient.StateCompleted {
		t.Fatalf("same request after a restart, file removed: %+v %v; want a new download", d, err)
	}
	assertPublished(t, waitFinished(t, c2, "rm"), dir, data, req.Checksum)
	if n := up.Requests("rm.qcow2"); n != 2 {
		t.Errorf("mirror saw %d requests, want 2", n)
	}
}

// TestBytesWrittenAreCapped: a body without end stops at the node's
// --max-image-size or at the request's exact size_bytes, with too_large;
// a file announced larger than the cap is refused before a byte is
// written; a body longer than its Content-Length is cut at it.
func TestBytesWrittenAreCapped(t *testing.T) {
	const maxSize = 2 << 20
	h := newHarness(t, func(c *nodeagent.Config) { c.MaxImageSize = maxSize })
	data := testenv.QCOW2Image(1<<20, 9)
	endless := h.up.AddFile("endless.qcow2", data)
	// Slow enough that an agent without a cap writes a bounded mess
	// before the test gives up on it.
	h.up.SetFault("endless.qcow2", testenv.Fault{Endless: true, BytesPerSecond: 8 << 20})

	t.Run("endless body, --max-image-size", func(t *testing.T) {
		h.start(agentclient.DownloadRequest{ID: "endless", URL: endless, FileName: "endless.qcow2"})
		d := waitFinished(t, h.client, "endless")
		assertFailed(t, d, h.pool, fault.TooLarge, false)
		if !strings.Contains(d.Error.Message, "--max-image-size") {
			t.Errorf("message does not name the cap: %s", d.Error.Message)
		}
	})
	t.Run("endless body, size_bytes", func(t *testing.T) {
		h.start(agentclient.DownloadRequest{ID: "sized", URL: endless, FileName: "sized.qcow2", SizeBytes: int64(len(data))})
		d := waitFinished(t, h.client, "sized")
		assertFailed(t, d, h.pool, fault.TooLarge, false)
		if !strings.Contains(d.Error.Message, "size_bytes") {
			t.Errorf("message does not name size_bytes: %s", d.Error.Message)
		}
	})
	t.Run("announced larger than the cap", func(t *testing.T) {
		big := testenv.QCOW2Image(maxSize+1, 10)
		h.start(agentclient.DownloadRequest{ID: "big", URL: h.up.AddFile("big.qcow2", big), FileName: "big.qcow2"})
		d := waitFinished(t, h.client, "big")
		assertFailed(t, d, h.pool, fault.TooLarge, false)
		if d.BytesDone != 0 {
			t.Errorf("%d bytes written before the refusal", d.BytesDone)
		}
		if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "big2", URL: h.up.FileURL("big.qcow2"), PoolID: "pool-1", FileName: "big2.qcow2", SizeBytes: maxSize + 1}); faultCode(err) != fault.TooLarge {
			t.Errorf("size_bytes past the cap: %v; want too_large up front", err)
		}
	})
	t.Run("body longer than Content-Length", func(t *testing.T) {
		url := h.up.AddFile("longer.qcow2", data)
		h.up.SetFault("longer.qcow2", testenv.Fault{LongerBy: 1 << 20})
		h.start(agentclient.DownloadRequest{ID: "longer", URL: url, FileName: "longer.qcow2"})
		assertPublished(t, waitFinished(t, h.client, "longer"), h.pool, data, testenv.SHA256(data))
	})
}

// TestPoolReserveIsKept: with --min-free at 100% no byte may be written:
// a file of known size is refused before writing, a chunked body at its
// first chunk; both with disk_full, retryable (another pool may do).
func TestPoolReserveIsKept(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.MinFree = "100%" })
	data := testenv.QCOW2Image(1<<20, 11)
	h.start(agentclient.DownloadRequest{ID: "known", URL: h.up.AddFile("known.qcow2", data), FileName: "known.qcow2"})
	d := waitFinished(t, h.client, "known")
	assertFailed(t, d, h.pool, fault.DiskFull, true)
	if !strings.Contains(d.Error.Message, "--min-free") {
		t.Errorf("message does not name the reserve: %s", d.Error.Message)
	}
	url := h.up.AddFile("chunked.qcow2", data)
	h.up.SetFault("chunked.qcow2", testenv.Fault{NoLength: true})
	h.start(agentclient.DownloadRequest{ID: "chunked", URL: url, FileName: "chunked.qcow2"})
	d = waitFinished(t, h.client, "chunked")
	assertFailed(t, d, h.pool, fault.DiskFull, true)
	if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "sized", URL: url, PoolID: "pool-1", FileName: "sized.qcow2", SizeBytes: 1}); faultCode(err) != fault.DiskFull {
		t.Errorf("size_bytes with no room: %v; want disk_full up front", err)
	}
}

func TestParseMinFreeAndSize(t *testing.T) {
	for _, good := range []string{"5%", "0", "0%", "100%", "2.5%", "20GiB", "1000000", "10 MB"} {
		if err := nodeagent.CheckMinFree(good); err != nil {
			t.Errorf("CheckMinFree(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", "101%", "-1%", "five", "-5", "1.5GiB", "99999999999TiB"} {
		if err := nodeagent.CheckMinFree(bad); err == nil {
			t.Errorf("CheckMinFree(%q) = nil, want an error", bad)
		}
	}
	for in, want := range map[string]int64{"64GiB": 64 << 30, "1KB": 1000, "7": 7, "3 MiB": 3 << 20, "1TB": 1e12} {
		if got, err := nodeagent.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// TestCheckpointsCoverOnlySyncedBytes: every checkpoint recorded on disk
// covers no more bytes than the partial file held at the fdatasync before
// it; when fdatasync fails, no checkpoint is recorded at all.
func TestCheckpointsCoverOnlySyncedBytes(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync works", true: "sync fails"}[failing], func(t *testing.T) {
			dir := t.TempDir()
			up := testenv.NewUpstream(t)
			data := testenv.QCOW2Image(4<<20, 12)
			url := up.AddFile("s.qcow2", data)
			up.SetFault("s.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
			srv, err := nodeagent.New(nodeagent.Config{NodeID: "n", Token: testToken, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
				Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
			if err != nil {
				t.Fatal(err)
			}
			recordPath := filepath.Join(dir, agentclient.ImagesDir, ".downloads", "s.json")
			var mu sync.Mutex
			var synced int64 // file size at the last successful sync
			var syncs int
			var violations []string
			check := func() {
				if r := readRecord(t, recordPath); r.BytesDone > synced {
					violations = append(violations, fmt.Sprintf("checkpoint at %d bytes, %d synced", r.BytesDone, synced))
				}
			}
			nodeagent.SetDatasync(srv, func(f *os.File) error {
				mu.Lock()
				defer mu.Unlock()
				check()
				syncs++
				if failing {
					return syscall.EIO
				}
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				synced = fi.Size()
				return nil
			})
			c := agentclient.New(newServer(t, srv), testToken)
			if _, err := c.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "s", URL: url, PoolID: "pool-1", FileName: "s.qcow2", Checksum: testenv.SHA256(data)}); err != nil {
				t.Fatal(err)
			}
			wait(t, c, "s", "past a checkpoint", func(d agentclient.Download) bool { return d.BytesDone > 2<<20 })
			srv.Close() // a last checkpoint
			mu.Lock()
			defer mu.Unlock()
			check()
			r := readRecord(t, recordPath)
			switch {
			case len(violations) > 0:
				t.Fatalf("checkpoints past the synced bytes: %v", violations)
			case syncs < 2:
				t.Fatalf("%d syncs for a download checkpointed at least twice", syncs)
			case failing && r.BytesDone != 0:
				t.Fatalf("checkpoint of %d bytes recorded though every sync failed", r.BytesDone)
			case !failing && r.BytesDone == 0:
				t.Fatal("no checkpoint recorded")
			}
		})
	}
}

type diskRecord struct {
	BytesDone int64  `json:"bytes_done"`
	State     string `json:"state"`
}

func readRecord(t *testing.T, path string) diskRecord {
	t.Helper()
	var r diskRecord
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		t.Fatalf("read record: %v", err)
	}
	return r
}

// TestTakeoverRehashesThePartialData: a node taking over another node's
// partial data on a shared pool hashes the prefix from the disk instead
// of trusting the other node's hash state. A prefix changed on disk (the
// other node's checkpoint covered bytes that never reached the disk) is
// noticed: the download starts again from zero and publishes the right
// bytes. An intact prefix is resumed.
func TestTakeoverRehashesThePartialData(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		t.Run(map[bool]string{false: "intact prefix resumed", true: "changed prefix refetched"}[corrupt], func(t *testing.T) {
			dir := t.TempDir()
			up := testenv.NewUpstream(t)
			data := testenv.QCOW2Image(4<<20, 13)
			url := up.AddFile("f.qcow2", data)
			up.SetFault("f.qcow2", testenv.Fault{BytesPerSecond: 2 << 20})
			req := agentclient.DownloadRequest{ID: "f", URL: url, PoolID: "pool-1", FileName: "f.qcow2", Checksum: testenv.SHA256(data)}
			agent := func(node string) (*nodeagent.Server, *agentclient.Client) {
				srv, err := nodeagent.New(nodeagent.Config{NodeID: node, Token: testToken, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
					Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("agent", node)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(srv.Close)
				return srv, agentclient.New(newServer(t, srv), testToken)
			}
			a, ca := agent("node-a")
			if _, err := ca.StartDownload(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			wait(t, ca, "f", "half done", func(d agentclient.Download) bool { return d.BytesDone > 2<<20 })
			a.Close()
			part := filepath.Join(dir, agentclient.ImagesDir, ".downloads", "f~node-a.part")
			if corrupt {
				f, err := os.OpenFile(part, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte{data[1000] ^ 0xff}, 1000); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			servedByA := up.BytesServed("f.qcow2")
			up.SetFault("f.qcow2", testenv.Fault{})

			_, cb := agent("node-b")
			if _, err := cb.StartDownload(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			assertPublished(t, waitFinished(t, cb, "f"), dir, data, req.Checksum)
			servedToB := up.BytesServed("f.qcow2") - servedByA
			if corrupt && servedToB != int64(len(data)) {
				t.Errorf("mirror served %d bytes to node-b; a changed prefix must be fetched again whole (%d)", servedToB, len(data))
			}
			if !corrupt && servedToB >= int64(len(data)) {
				t.Errorf("mirror served %d bytes to node-b; an intact prefix must be resumed", servedToB)
			}
		})
	}
}

// TestUnverifiedDownloadResumesOnlyWithAStrongETag: a mirror that gives
// only a weak ETag (and Last-Modified) drops the connection once. Without
// a checksum nothing would catch a splice of two versions, so the agent
// starts again from zero; with one, it resumes.
func TestUnverifiedDownloadResumesOnlyWithAStrongETag(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(2<<20, 14)
	const dropAt = 1 << 20
	for _, verified := range []bool{false, true} {
		name := map[bool]string{false: "unverified.qcow2", true: "verified.qcow2"}[verified]
		url := h.up.AddFile(name, data)
		h.up.SetFault(name, testenv.Fault{WeakETag: true, DropAfterBytes: dropAt, Drops: 1})
		req := agentclient.DownloadRequest{ID: strings.TrimSuffix(name, ".qcow2"), URL: url, FileName: name}
		if verified {
			req.Checksum = testenv.SHA256(data)
		}
		h.start(req)
		assertPublished(t, waitFinished(t, h.client, req.ID), h.pool, data, testenv.SHA256(data))
		served := h.up.BytesServed(name)
		if !verified && served != dropAt+int64(len(data)) {
			t.Errorf("unverified download with a weak ETag: mirror served %d bytes, want %d (a restart from zero)", served, dropAt+len(data))
		}
		if verified && served != int64(len(data)) {
			t.Errorf("verified download: mirror served %d bytes, want %d (a resume)", served, len(data))
		}
	}
}

// TestQueueIsBounded: past --max-queued waiting downloads a request is
// refused with a retryable node_unreachable (503), and no job is made.
func TestQueueIsBounded(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.MaxConcurrent, c.MaxQueued = 1, 1 })
	data := testenv.QCOW2Image(1<<20, 15)
	for _, name := range []string{"run.qcow2", "wait.qcow2", "over.qcow2"} {
		h.up.AddFile(name, data)
	}
	h.up.SetFault("run.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	h.start(agentclient.DownloadRequest{ID: "run", URL: h.up.FileURL("run.qcow2"), FileName: "run.qcow2"})
	wait(t, h.client, "run", "running", func(d agentclient.Download) bool { return d.State == agentclient.StateRunning })
	h.start(agentclient.DownloadRequest{ID: "wait", URL: h.up.FileURL("wait.qcow2"), FileName: "wait.qcow2"})
	over := agentclient.DownloadRequest{ID: "over", URL: h.up.FileURL("over.qcow2"), PoolID: "pool-1", FileName: "over.qcow2"}
	status, body := rawRequest(t, "POST", h.http.URL+"/v1/downloads", testToken, mustJSON(t, over))
	if status != 503 || !strings.Contains(body, `"code":"node_unreachable"`) || !strings.Contains(body, `"retryable":true`) || !strings.Contains(body, "--max-queued") {
		t.Fatalf("request past the queue: %d %s; want 503 node_unreachable, retryable", status, body)
	}
	if _, err := h.client.Download(ctx(t), "over"); faultCode(err) != fault.NotFound {
		t.Errorf("a refused request left a job: %v", err)
	}
	assertPublished(t, waitFinished(t, h.client, "wait"), h.pool, data, testenv.SHA256(data))
	// Room again once the queue drained.
	h.start(over)
	assertPublished(t, waitFinished(t, h.client, "over"), h.pool, data, testenv.SHA256(data))
}

func TestHealthReportsVersionAndFeatures(t *testing.T) {
	h := newHarness(t, nil)
	health, err := h.client.Health(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if health.Version != "test" {
		t.Errorf("version %q, want test", health.Version)
	}
	for _, f := range []string{agentclient.FeatureMaxImageSize, agentclient.FeatureMinFree, agentclient.FeatureNoReplacePublish,
		agentclient.FeatureRehashTakeover, agentclient.FeatureStrongValidatorResume, agentclient.FeatureBoundedQueue,
		agentclient.FeatureDecompress} {
		if !health.Supports(f) {
			t.Errorf("health does not name feature %s: %v", f, health.Features)
		}
	}
	if health.Supports("time_travel") {
		t.Error("Supports answers true for a feature no agent has")
	}
}

// TestNodeIDMustBeAName: the node id is part of its partial files' names,
// so it must be a valid name (no '/', no '..').
func TestNodeIDMustBeAName(t *testing.T) {
	for _, id := range []string{"a/b", "..", "node~1"} {
		if _, err := nodeagent.New(nodeagent.Config{NodeID: id, Token: testToken, Pools: []nodeagent.PoolDir{{ID: "p", Dir: t.TempDir()}}}); err == nil || !strings.Contains(err.Error(), "node id") {
			t.Errorf("New with node id %q: %v; want an error about the node id", id, err)
		}
	}
}
