package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// TestVendorImagesEndToEnd takes images as vendors publish them through the
// whole stack: an xz-compressed qcow2 ends READY with the decompressed
// image published (the vendor's checksum names the compressed bytes, the
// file's own is recorded), and a qcow2 whose backing file is a host path
// ends FAILED with unsafe_image and leaves nothing in the pool.
func TestVendorImagesEndToEnd(t *testing.T) {
	for _, tool := range []string{"xz", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run `make test-deps`", tool)
		}
	}
	s := faultStack(t, "")
	up := testenv.NewUpstream(t)

	t.Run("an xz-compressed qcow2 is published decompressed", func(t *testing.T) {
		raw := testenv.QCOW2Image(2<<20, 77)
		cmd := exec.Command("xz", "-c", "-3")
		cmd.Stdin = bytes.NewReader(raw)
		packed, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz: %v", err)
		}
		url := up.AddFile("vendor.qcow2.xz", packed)
		var img api.Image
		s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": url, "checksum": testenv.SHA256(packed),
			"pool_id": "local-1"}, &img, http.StatusAccepted)
		done := waitStatus(t, s, img.ID, "READY", time.Minute)
		if done.FileName != "vendor.qcow2" || filepath.Base(done.Path) != "vendor.qcow2" {
			t.Errorf("published as %s at %s, want vendor.qcow2", done.FileName, done.Path)
		}
		if done.Checksum != testenv.SHA256(packed) || done.SourceChecksum != testenv.SHA256(packed) {
			t.Errorf("checksum %s, source_checksum %s; want the compressed bytes' %s", done.Checksum, done.SourceChecksum, testenv.SHA256(packed))
		}
		if done.FileChecksum != testenv.SHA256(raw) || done.Compression != "xz" || done.Format != "qcow2" {
			t.Errorf("file_checksum %s, compression %q, format %q; want %s, xz, qcow2", done.FileChecksum, done.Compression, done.Format, testenv.SHA256(raw))
		}
		if got := fileSHA256(t, done.Path); got != testenv.SHA256(raw) {
			t.Errorf("the published file has %s, want the decompressed image's %s", got, testenv.SHA256(raw))
		}
	})

	t.Run("a qcow2 backed by a host file fails with unsafe_image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "backed.qcow2")
		if b, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", out, "16M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		f := mirrorFile{name: "backed.qcow2", url: up.AddFile("backed.qcow2", data), data: data, sum: testenv.SHA256(data)}
		img := download(t, s, f, "shared")
		done := waitStatus(t, s, img.ID, "FAILED", time.Minute)
		wantError(t, done, "unsafe_image")
		checkNoData(t, s, "shared", done.FileName)
	})
}
