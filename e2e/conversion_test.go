package e2e

import (
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// TestConversionEndToEnd downloads a qcow2 into a pool that keeps raw
// images, through the whole stack: real Temporal, worker, API and agent
// processes, and the real qemu-img. node-2's agent is pointed at a
// qemu-img that is not there, so the download, though it prefers node-2,
// is given to node-1, and goes DOWNLOADING → CONVERTING → READY with
// progress.percent moving while it converts (VERIFYING, milliseconds for
// an uncompressed image, is seen only when a poll falls on it). The
// published file is raw, named .raw, of the virtual size, the same disk
// as the source; checksum and source_checksum are the qcow2's,
// file_checksum the raw file's. A raw pool that only node-2 serves gets
// no_node_available that says to install qemu-utils, and nothing on disk.
func TestConversionEndToEnd(t *testing.T) {
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img is missing: run `make test-deps` (Debian's qemu-utils)")
	}
	dir := t.TempDir()
	// qemu-img's own rate limit (-r) makes the conversion last about ten
	// seconds, long enough for polls of the API to see it move.
	slow := filepath.Join(dir, "qemu-img")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nif [ \"$1\" = convert ]; then shift; exec "+real+" convert -r 8M \"$@\"; fi\nexec "+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartStack(t, testenv.StackOptions{
		Pools: []testenv.StackPool{
			{ID: "raw-shared", Shared: true, NodeIDs: []string{"node-1", "node-2"}, ImageFormat: "raw"},
			{ID: "raw-2", NodeIDs: []string{"node-2"}, ImageFormat: "raw"},
		},
		WorkerArgs: []string{"--no-node-timeout", "4s"},
		NodeAgentArgs: map[string][]string{
			"node-1": {"--qemu-img", slow},
			"node-2": {"--qemu-img", filepath.Join(dir, "none", "qemu-img")},
		},
	})
	up := testenv.NewUpstream(t)
	const virtual = 96 << 20
	src := randomQCOW2(t, virtual)
	url := up.AddFile("vendor.qcow2", src.data)
	up.SetFault("vendor.qcow2", testenv.Fault{BytesPerSecond: 32 << 20}) // about 3 s of DOWNLOADING

	t.Run("a qcow2 into a raw pool is converted and published raw", func(t *testing.T) {
		var img api.Image
		s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": url, "name": "vendor",
			"checksum": testenv.SHA256(src.data), "pool_id": "raw-shared", "node_id": "node-2"}, &img, http.StatusAccepted)
		var statuses []string
		var percents []float64
		deadline := time.Now().Add(3 * time.Minute)
		for !img.Terminal() {
			if time.Now().After(deadline) {
				t.Fatalf("image %s still %s after 3 minutes; seen %v", img.ID, img.Status, statuses)
			}
			time.Sleep(100 * time.Millisecond)
			img = getImage(t, s, img.ID)
			if len(statuses) == 0 || statuses[len(statuses)-1] != img.Status {
				statuses = append(statuses, img.Status)
			}
			if img.Status == "CONVERTING" {
				percents = append(percents, img.Progress.Percent)
				// Between the node's end and READY being recorded the
				// figures are the finished download's, at 100 %.
				if img.Progress.BytesTotal != virtual && img.Progress.Percent != 100 {
					t.Errorf("CONVERTING with %d of %d bytes; want the conversion's, of the virtual size %d", img.Progress.BytesDone, img.Progress.BytesTotal, virtual)
				}
			}
		}
		if img.Status != "READY" {
			t.Fatalf("image ended %s (error %+v); statuses seen %v", img.Status, img.Error, statuses)
		}
		t.Logf("statuses seen %v; progress.percent while CONVERTING %v", statuses, slices.Compact(slices.Clone(percents)))
		checkStatusOrder(t, statuses, "DOWNLOADING", "CONVERTING", "READY")
		if !slices.IsSorted(percents) || !slices.ContainsFunc(percents, func(p float64) bool { return p > 0 && p < 100 }) ||
			len(slices.Compact(slices.Clone(percents))) < 2 {
			t.Errorf("progress.percent while CONVERTING: %v; want it rising, with a value between 0 and 100", percents)
		}
		if imageNode(img) != "node-1" {
			t.Errorf("converted on %s, want node-1 (node-2 has no qemu-img)", imageNode(img))
		}
		if !strings.HasSuffix(img.FileName, ".raw") || filepath.Base(img.Path) != img.FileName || img.Format != "raw" {
			t.Errorf("published %s at %s as %q; want a .raw file in raw format", img.FileName, img.Path, img.Format)
		}
		fi, err := os.Stat(img.Path)
		if err != nil {
			t.Fatalf("the published file: %v", err)
		}
		if img.VirtualSizeBytes == nil || *img.VirtualSizeBytes != virtual || fi.Size() != virtual {
			t.Errorf("file of %d bytes, virtual_size_bytes %v; want both %d", fi.Size(), img.VirtualSizeBytes, virtual)
		}
		if img.Checksum != testenv.SHA256(src.data) || img.SourceChecksum != img.Checksum {
			t.Errorf("checksum %s, source_checksum %s; want the qcow2's %s", img.Checksum, img.SourceChecksum, testenv.SHA256(src.data))
		}
		if got := fileSHA256(t, img.Path); img.FileChecksum != got {
			t.Errorf("file_checksum %s, the published file's sha256 is %s", img.FileChecksum, got)
		}
		if b, err := exec.Command(real, "compare", "-f", "qcow2", "-F", "raw", src.path, img.Path).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare of the source and the published file: %v\n%s", err, b)
		}
	})

	t.Run("a raw pool whose only node has no qemu-img is refused", func(t *testing.T) {
		var img api.Image
		s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": url, "name": "vendor",
			"checksum": testenv.SHA256(src.data), "pool_id": "raw-2"}, &img, http.StatusAccepted)
		done := waitStatus(t, s, img.ID, "FAILED", 2*time.Minute)
		if wantError(t, done, "no_node_available") && !strings.Contains(done.Error.Message, "qemu-utils") {
			t.Errorf("message %q does not say to install qemu-utils", done.Error.Message)
		}
		checkNoData(t, s, "raw-2", done.FileName)
	})
}

// generatedImage is a disk image written for a test, and its bytes.
type generatedImage struct {
	path string
	data []byte
}

// randomQCOW2 is a qcow2 that qemu-img makes of size random bytes: every
// cluster allocated, so a conversion has all of it to write.
func randomQCOW2(t *testing.T, size int) generatedImage {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(14)).Read(b)
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return generatedImage{path: out, data: data}
}

// checkStatusOrder checks that the statuses seen, in order, follow the
// lifecycle PENDING → DOWNLOADING → VERIFYING → CONVERTING → READY
// without going back, and include each of must.
func checkStatusOrder(t *testing.T, seen []string, must ...string) {
	t.Helper()
	order := []string{"PENDING", "DOWNLOADING", "VERIFYING", "CONVERTING", "READY"}
	last := -1
	for _, st := range seen {
		i := slices.Index(order, st)
		switch {
		case i < 0:
			t.Errorf("statuses seen %v: %s is not in the lifecycle", seen, st)
		case i < last:
			t.Errorf("statuses seen %v: %s after %s", seen, st, order[last])
		default:
			last = i
		}
	}
	for _, m := range must {
		if !slices.Contains(seen, m) {
			t.Errorf("statuses seen %v: no %s", seen, m)
		}
	}
}
