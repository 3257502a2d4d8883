package nodeagent_test

import (
	"bytes"
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
