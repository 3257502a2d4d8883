package nodeagent_test

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// cached is the share of path's pages in the page cache (mincore).
func cached(t *testing.T, path string) float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return float64(in) / float64(len(vec))
}

// uploadOddly uploads data in PATCHes of 1 MiB + 4099 bytes, so that every
// PATCH after the first starts at an offset that is not block-aligned, and
// returns the finished upload.
func uploadOddly(t *testing.T, h *harness, id string, data []byte) agentclient.Download {
	t.Helper()
	startUpload(t, h.client, id, data, testenv.SHA256(data))
	for off := int64(0); off < int64(len(data)); {
		end := min(off+1<<20+4099, int64(len(data)))
		if _, err := write(t, h.client, id, off, data[off:end]); err != nil {
			t.Fatalf("PATCH at %d: %v", off, err)
		}
		off = end
	}
	d := waitFinished(t, h.client, id)
	if d.State != agentclient.StateCompleted {
		t.Fatalf("upload %s: %s, %v", id, d.State, d.Error)
	}
	return d
}

// An image leaves the node's page cache once it is on disk: the cache is
// for the node's VMs, and the agent does not read the image again. A file
// of the same size written plainly stays cached: the measure can fail.
func TestImagesLeaveThePageCacheOnceOnDisk(t *testing.T) {
	data := testenv.QCOW2Image(24<<20+1234, 31)
	sum := testenv.SHA256(data)
	h := newHarness(t, nil)

	plain := filepath.Join(h.pool, "plain.img")
	if err := os.WriteFile(plain, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if share := cached(t, plain); share < 0.5 {
		t.Fatalf("a file just written is %.0f%% in the page cache: mincore says nothing here", 100*share)
	}

	d := uploadOddly(t, h, "up-cache", data)
	if share := cached(t, filepath.Join(h.pool, agentclient.ImagesDir, d.FileName)); share > 0.2 {
		t.Errorf("%.0f%% of the uploaded image is in the page cache, want < 20%%", 100*share)
	}
	assertPublished(t, d, h.pool, data, sum)

	url := h.up.AddFile("cache.qcow2", data)
	if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "dl-cache", URL: url, PoolID: "pool-1", FileName: "dl-cache.qcow2", Checksum: sum}); err != nil {
		t.Fatal(err)
	}
	d = waitFinished(t, h.client, "dl-cache")
	if d.State != agentclient.StateCompleted {
		t.Fatalf("download: %s, %v", d.State, d.Error)
	}
	if share := cached(t, filepath.Join(h.pool, agentclient.ImagesDir, d.FileName)); share > 0.2 {
		t.Errorf("%.0f%% of the downloaded image is in the page cache, want < 20%%", 100*share)
	}
	assertPublished(t, d, h.pool, data, sum)
}

// What a PATCH brought is synced and out of the cache when it is
// answered: an upload waiting for the rest of its bytes (for hours,
// perhaps) holds none of the cache.
func TestAnUploadWaitingForItsBytesHoldsNoCache(t *testing.T) {
	data := testenv.QCOW2Image(96<<20, 34)
	h := newHarness(t, nil)
	startUpload(t, h.client, "up-stream", data, testenv.SHA256(data))
	// 80 MiB in: more than one checkpoint's 64 MiB.
	if _, err := write(t, h.client, "up-stream", 0, data[:80<<20]); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(h.pool, agentclient.ImagesDir, ".downloads", "up-stream~node-t.part")
	if share := cached(t, part); share > 0.2 {
		t.Errorf("%.0f%% of the 80 MiB received is in the page cache while the upload waits for the rest, want < 20%%", 100*share)
	}
	if _, err := write(t, h.client, "up-stream", 80<<20, data[80<<20:]); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, h.client, "up-stream"), h.pool, data, testenv.SHA256(data))
}
