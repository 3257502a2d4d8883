package nodeagent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/quantix/cloudimages/internal/testenv"
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
