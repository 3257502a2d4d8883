package nodeagent_test

import (
	"sync"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestTransientWriteErrorResumesVerified: one failed write to the partial
// file (a disk that was full for a moment) is retried and the image still
// verifies. The reader hashes ahead of the writer, so the hash must be set
// back with the file, or the retry ends in a false checksum_mismatch.
func TestTransientWriteErrorResumesVerified(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	writes := 0
	nodeagent.SetWriteFault(h.srv, func(int) error {
		mu.Lock()
		defer mu.Unlock()
		if writes++; writes == 3 {
			return syscall.ENOSPC
		}
		return nil
	})
	data := testenv.QCOW2Image(8<<20, 7)
	url := h.up.AddFile("blip.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "blip", URL: url, FileName: "blip.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, h.client, "blip"), h.pool, data, testenv.SHA256(data))
	mu.Lock()
	defer mu.Unlock()
	if writes < 4 {
		t.Fatalf("the write fault fired but only %d writes happened: the retry did not run", writes)
	}
}
