package nodeagent_test

import (
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// randomQCOW2 returns a qcow2 made by qemu-img from a raw disk of size
// random bytes: every cluster allocated, so that converting it moves
// qemu-img's progress in steps (a sparse image jumps from 0 to 100 %).
func randomQCOW2(t *testing.T, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(b)
	dir := t.TempDir()
	raw, src := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	return readFile(t, src)
}

// TestConversionReportsProgress converts a real qcow2 to raw with the real
// qemu-img and watches its progress as callers see it: at one of qemu-img's
// reports below 100 % (held there while the test looks) the download is
// "converting" with bytes_total the virtual size and bytes_done that share
// of it; the reports never go back and reach 100 %; once published the
// bytes are the download's again.
func TestConversionReportsProgress(t *testing.T) {
	const virtual = 48 << 20
	data := randomQCOW2(t, virtual)
	h := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = realQemuImg(t) })
	var (
		mu      sync.Mutex
		reports []float64
		during  *agentclient.Download
		seenAt  float64
	)
	nodeagent.SetConvertReport(h.srv, func(pct float64) {
		mu.Lock()
		reports = append(reports, pct)
		look := during == nil && pct > 0 && pct < 100
		mu.Unlock()
		if !look {
			return
		}
		// qemu-img goes on; the agent shows this report until we return.
		d, err := h.client.Download(ctx(t), "img")
		if err != nil {
			t.Errorf("GET the download while converting: %v", err)
			return
		}
		mu.Lock()
		during, seenAt = &d, pct
		mu.Unlock()
	})
	url := h.up.AddFile("disk.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	d := waitFinished(t, h.client, "img")
	if d.State != agentclient.StateCompleted {
		t.Fatalf("state %s, error %+v; want completed", d.State, d.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if during == nil {
		t.Fatalf("qemu-img reported %v: never a share between 0 and 100 %%", reports)
	}
	if during.State != agentclient.StateConverting || during.BytesTotal != virtual ||
		during.BytesDone != int64(seenAt/100*virtual) || during.BytesDone <= 0 || during.BytesDone >= virtual {
		t.Errorf("at qemu-img's %.2f %%: state %s, %d of %d bytes; want converting, %d of %d", seenAt,
			during.State, during.BytesDone, during.BytesTotal, int64(seenAt/100*virtual), virtual)
	}
	if !slices.IsSorted(reports) || reports[len(reports)-1] != 100 {
		t.Errorf("qemu-img's reports %v: want them rising to 100", reports)
	}
	if d.BytesDone != int64(len(data)) || d.VirtualSizeBytes != virtual || d.FileChecksum != testenv.SHA256(readFile(t, d.Path)) {
		t.Errorf("published: %d bytes done, virtual size %d, file checksum %s; want the download's %d, %d, the raw file's",
			d.BytesDone, d.VirtualSizeBytes, d.FileChecksum, len(data), virtual)
	}
	assertNoWorkFiles(t, h.pool)
}

// TestConversionOutOfSpaceIsDiskFull converts on a real tmpfs that has
// room for the raw image when qemu-img starts, but not by the time it
// writes: another writer on the same file system (a VM's disk growing)
// takes the room first, as the wrapper does before it runs the real
// qemu-img. The kernel answers ENOSPC; the download fails disk_full
// (retryable, so another node or pool may take it), not
// conversion_failed, and leaves no file behind.
func TestConversionOutOfSpaceIsDiskFull(t *testing.T) {
	fs := t.TempDir()
	if err := syscall.Mount("tmpfs", fs, "tmpfs", 0, "size=40m"); err != nil {
		testenv.SkipUnlessCI(t, "cannot mount a tmpfs here (%v): run as root (as CI does) for a real ENOSPC under qemu-img", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(fs, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", fs, err)
		}
	})
	pool := filepath.Join(fs, "pool")
	if err := os.Mkdir(pool, 0o755); err != nil {
		t.Fatal(err)
	}
	// 16 MiB of data in a 20 MiB disk: after the download, 40 MiB holds
	// the raw image's 20 MiB, so the agent's own check lets it through.
	const virtual = 20 << 20
	b := make([]byte, virtual)
	rand.New(rand.NewSource(3)).Read(b[:16<<20])
	raw, src := filepath.Join(t.TempDir(), "disk.raw"), filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	data := readFile(t, src)
	filler := filepath.Join(fs, "vm-disk")
	wrapper := script(t, `if [ "$1" = convert ]; then
  avail=$(df --output=avail -B1 `+fs+` | tail -n 1)
  fallocate -l $((avail - 4194304)) `+filler+` || exit 99
fi
exec `+realQemuImg(t)+` "$@"`)
	h := newHarness(t, func(c *nodeagent.Config) {
		c.Pools[0].Dir, c.MinFree, c.QemuImg = pool, "0", wrapper
	})
	url := h.up.AddFile("disk.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	d := waitFinished(t, h.client, "img")
	if _, err := os.Stat(filler); err != nil {
		t.Fatalf("the wrapper did not take the room (%v): the test proves nothing", err)
	}
	assertFailed(t, d, pool, fault.DiskFull, true)
	for _, want := range []string{"No space left on device", "pool-1", pool} {
		if !strings.Contains(d.Error.Message, want) {
			t.Errorf("message %q does not say %q", d.Error.Message, want)
		}
	}
	assertNoWorkFiles(t, pool)
	var st syscall.Statfs_t
	if err := syscall.Statfs(fs, &st); err != nil {
		t.Fatal(err)
	}
	// The filler leaves 4 MiB; the download's 16 MiB and whatever qemu-img
	// wrote must have been given back.
	if free := int64(st.Bavail) * st.Bsize; free < 20<<20 {
		t.Errorf("%d bytes free on the tmpfs after the failure, want at least %d: the agent left data behind", free, 20<<20)
	}
}
