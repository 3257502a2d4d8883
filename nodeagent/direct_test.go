package nodeagent_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
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

// Images are written with direct I/O: a node's page cache, which its VMs'
// disks need, is not filled with images nobody reads soon. With direct I/O
// off, the same upload leaves the file in the cache: the measure can fail.
func TestImagesAreWrittenPastThePageCache(t *testing.T) {
	data := testenv.QCOW2Image(24<<20+1234, 31)
	for _, direct := range []bool{false, true} {
		h := newHarness(t, nil)
		nodeagent.SetDirectIO(h.srv, direct)
		d := uploadOddly(t, h, "up-direct", data)
		path := filepath.Join(h.pool, agentclient.ImagesDir, d.FileName)
		share := cached(t, path)
		t.Logf("direct I/O %v: %.0f%% of the uploaded image in the page cache", direct, 100*share)
		switch {
		case direct && share > 0.2:
			t.Errorf("with direct I/O, %.0f%% of the uploaded image is in the page cache, want < 20%%", 100*share)
		case !direct && share < 0.5:
			t.Errorf("without direct I/O, only %.0f%% of the uploaded image is in the page cache: the measure says nothing", 100*share)
		}
		assertPublished(t, d, h.pool, data, testenv.SHA256(data))

		// A download goes the same way, from a mirror whose file ends
		// off a block boundary.
		url := h.up.AddFile("direct.qcow2", data)
		sum := testenv.SHA256(data)
		if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "dl-direct", URL: url, PoolID: "pool-1", FileName: "dl-direct.qcow2", Checksum: sum}); err != nil {
			t.Fatal(err)
		}
		d = waitFinished(t, h.client, "dl-direct")
		share = cached(t, filepath.Join(h.pool, agentclient.ImagesDir, d.FileName))
		if direct && share > 0.2 {
			t.Errorf("with direct I/O, %.0f%% of the downloaded image is in the page cache, want < 20%%", 100*share)
		}
		assertPublished(t, d, h.pool, data, sum)
	}
}

// A file system that refuses O_DIRECT answers the first direct write with
// EINVAL: the agent writes through the page cache instead, says so once,
// and the image is whole.
func TestFileSystemRefusingDirectIOGetsThePageCache(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, func(c *nodeagent.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var mu sync.Mutex
	refused := 0
	nodeagent.SetDirectFault(h.srv, func() error {
		mu.Lock()
		defer mu.Unlock()
		refused++
		return unix.EINVAL
	})
	data := testenv.QCOW2Image(6<<20+17, 32)
	d := uploadOddly(t, h, "up-refused", data)
	if share := cached(t, filepath.Join(h.pool, agentclient.ImagesDir, d.FileName)); share < 0.5 {
		t.Errorf("%.0f%% of the image in the page cache: it was not written through it", 100*share)
	}
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	mu.Lock()
	defer mu.Unlock()
	// Each PATCH is a transfer of its own, and tries direct I/O once.
	if n := strings.Count(logs.String(), "refuses direct I/O"); refused == 0 || n != refused {
		t.Errorf("%d direct writes refused, %d log lines saying so; want one line for each, and some", refused, n)
	}
}

// A pool on a file system other than a local disk's (tmpfs here; NFS in a
// cluster, where a direct write is a synchronous round trip) is written
// through the page cache, and the image is whole.
func TestPoolOffALocalDiskIsWrittenThroughThePageCache(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "cloudimages-pool-")
	if err != nil {
		t.Fatalf("a pool on tmpfs (/dev/shm): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var logs lockedBuffer
	h := newHarness(t, func(c *nodeagent.Config) {
		c.Pools = []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	nodeagent.SetDirectFault(h.srv, func() error {
		t.Error("a direct write on tmpfs")
		return nil
	})
	data := testenv.QCOW2Image(3<<20+5, 33)
	d := uploadOddly(t, h, "up-tmpfs", data)
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	if !strings.Contains(logs.String(), "not on a local disk file system") || !strings.Contains(logs.String(), "fs_magic=0x1021994") {
		t.Errorf("no log line saying the tmpfs pool is written through the page cache:\n%s", logs.String())
	}
}
