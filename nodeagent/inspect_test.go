package nodeagent_test

import (
	"archive/zip"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// qemuImg creates an image of format and size with the real qemu-img
// (options such as "-b FILE" go before the file name) and returns its
// bytes. The tests need it: CI installs it with `make test-deps`.
func qemuImg(t *testing.T, format, size string, opts ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is missing: run `make test-deps` (Debian's qemu-utils)")
	}
	out := filepath.Join(t.TempDir(), "img")
	args := append(append([]string{"create", "-f", format}, opts...), out, size)
	if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestUnsafeAndForeignImagesAreNeverPublished downloads, with the right
// checksum, images that must not reach a hypervisor: each fails with its
// code, and neither the file nor partial data is left in the pool.
func TestUnsafeAndForeignImagesAreNeverPublished(t *testing.T) {
	dataFile := filepath.Join(t.TempDir(), "data.raw")
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	w, _ := zw.Create("disk.qcow2")
	w.Write(testenv.QCOW2Image(4096, 1))
	zw.Close()
	cases := []struct {
		name, file, format string
		data               []byte
		code, says         string
	}{
		{"qcow2 with a backing file", "backing.qcow2", "",
			qemuImg(t, "qcow2", "16M", "-u", "-b", "/etc/passwd", "-F", "raw"), fault.UnsafeImage, "backing file"},
		{"qcow2 with an external data file", "external.qcow2", "",
			qemuImg(t, "qcow2", "16M", "-o", "data_file="+dataFile), fault.UnsafeImage, "external data file"},
		{"vmdk whose extents are other files", "split.vmdk", "",
			qemuImg(t, "vmdk", "16M", "-o", "subformat=monolithicFlat"), fault.UnsafeImage, "extent"},
		{"zip archive", "disk.img", "", zipped.Bytes(), fault.NotADiskImage, "zip"},
		{"qcow2 declared, vmdk served", "declared.qcow2", "qcow2",
			qemuImg(t, "vmdk", "16M"), fault.FormatMismatch, "vmdk"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			url := h.up.AddFile(c.file, c.data)
			d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, PoolID: "pool-1", FileName: c.file,
				Format: c.format, Checksum: testenv.SHA256(c.data)})
			d = waitFinished(t, h.client, d.ID)
			assertFailed(t, d, h.pool, c.code, false)
			if !strings.Contains(strings.ToLower(d.Error.Message), c.says) {
				t.Errorf("message %q does not say %q", d.Error.Message, c.says)
			}
		})
	}
}

// TestPublishedImageCarriesItsFormat checks that what inspection found
// reaches the caller: a qcow2 made by qemu-img, and raw bytes without any
// partition table, which pass as raw when nothing else was declared.
func TestPublishedImageCarriesItsFormat(t *testing.T) {
	h := newHarness(t, nil)
	qcow := qemuImg(t, "qcow2", "1G")
	raw := bytes.Repeat([]byte{7}, 64<<10)
	for _, c := range []struct {
		file    string
		data    []byte
		format  string
		virtual int64
	}{{"disk.qcow2", qcow, "qcow2", 1 << 30}, {"disk.img", raw, "raw", 64 << 10}} {
		url := h.up.AddFile(c.file, c.data)
		d := h.start(agentclient.DownloadRequest{ID: strings.TrimSuffix(c.file, filepath.Ext(c.file)) + "-" + c.format, URL: url,
			PoolID: "pool-1", FileName: c.file, Checksum: testenv.SHA256(c.data)})
		d = waitFinished(t, h.client, d.ID)
		assertPublished(t, d, h.pool, c.data, testenv.SHA256(c.data))
		if d.Format != c.format || d.VirtualSizeBytes != c.virtual {
			t.Errorf("%s: format %q, virtual size %d; want %q, %d", c.file, d.Format, d.VirtualSizeBytes, c.format, c.virtual)
		}
	}
}
