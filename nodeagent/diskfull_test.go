package nodeagent_test

import (
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const smallPoolSize = 4 << 20

// smallPool returns a pool directory with smallPoolSize bytes of room: a
// real tmpfs when this process may mount one (root, as in CI), so the
// kernel itself answers ENOSPC. Elsewhere it says so and returns false:
// the caller then injects ENOSPC through the agent's write-fault seam.
func smallPool(t *testing.T) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Logf("cannot mount a tmpfs here (%v): injecting ENOSPC through nodeagent.SetWriteFault instead", err)
		return dir, false
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, true
}

func TestDiskFull(t *testing.T) {
	dir, real := smallPool(t)
	h := newHarness(t, func(c *nodeagent.Config) { c.Pools[0].Dir = dir })
	var mu sync.Mutex
	written := 0
	if !real {
		nodeagent.SetWriteFault(h.srv, func(n int) error {
			mu.Lock()
			defer mu.Unlock()
			if written += n; written > smallPoolSize {
				return syscall.ENOSPC
			}
			return nil
		})
	}
	data := testenv.QCOW2Image(6<<20, 1)

	t.Run("Content-Length larger than free space: refused before writing", func(t *testing.T) {
		if !real {
			t.Log("no small file system: the free-space check cannot be tried against Content-Length here; TestBadRequestsAreRefused covers it for size_bytes")
			return
		}
		url := h.up.AddFile("big.qcow2", data)
		h.start(agentclient.DownloadRequest{ID: "big", URL: url, FileName: "big.qcow2", Checksum: testenv.SHA256(data)})
		d := waitFinished(t, h.client, "big")
		assertFailed(t, d, h.pool, fault.DiskFull, true)
		if !strings.Contains(d.Error.Message, "bytes of room") || d.BytesDone != 0 {
			t.Errorf("want a refusal before any byte is written: %+v", d)
		}
	})

	t.Run("ENOSPC while writing: disk_full, partial data removed", func(t *testing.T) {
		url := h.up.AddFile("nolen.qcow2", data)
		h.up.SetFault("nolen.qcow2", testenv.Fault{NoLength: true}) // nothing to check up front
		h.start(agentclient.DownloadRequest{ID: "nolen", URL: url, FileName: "nolen.qcow2", Checksum: testenv.SHA256(data)})
		d := waitFinished(t, h.client, "nolen")
		assertFailed(t, d, h.pool, fault.DiskFull, true)
		if real {
			health, err := h.client.Health(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if p := health.Pools[0]; p.FreeBytes < smallPoolSize-256<<10 {
				t.Errorf("pool has %d of %d bytes free after the failure: the partial data was not removed", p.FreeBytes, p.TotalBytes)
			}
		}
	})

	t.Run("a file that fits still downloads", func(t *testing.T) {
		mu.Lock()
		written = 0 // the seam's disk is empty again too
		mu.Unlock()
		small := testenv.QCOW2Image(1<<20, 2)
		url := h.up.AddFile("small.qcow2", small)
		h.start(agentclient.DownloadRequest{ID: "small", URL: url, FileName: "small.qcow2", Checksum: testenv.SHA256(small)})
		assertPublished(t, waitFinished(t, h.client, "small"), h.pool, small, testenv.SHA256(small))
	})
}
