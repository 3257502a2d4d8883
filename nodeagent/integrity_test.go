package nodeagent_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
