package nodeagent_test

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// realQemuImg is the path of Debian's qemu-img, which these tests need.
func realQemuImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatalf("qemu-img is missing: run `make test-deps` (Debian's qemu-utils)")
	}
	return p
}

// runQemuImg runs the real qemu-img as a user would by hand.
func runQemuImg(t *testing.T, args ...string) {
	t.Helper()
	if b, err := exec.Command(realQemuImg(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, b)
	}
}

// rawDisk writes a 64 MiB raw disk, sparse but for random data at a few
// offsets, and returns its path.
func rawDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(14))
	for _, off := range []int64{0, 1 << 20, 33<<20 + 4096, 64<<20 - 65536} {
		b := make([]byte, 65536)
		rng.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu-img")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConvertQCOW2ToRaw downloads a qcow2 for a raw pool: the agent says
// "converting" while qemu-img runs (held back by a wrapper until the test
// has seen it), then publishes a raw file of the virtual size whose bytes
// are what qemu-img convert gives by hand, with the source's checksum and
// the raw file's own.
func TestConvertQCOW2ToRaw(t *testing.T) {
	real := realQemuImg(t)
	raw := rawDisk(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	runQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	byHand := filepath.Join(t.TempDir(), "by-hand.raw")
	runQemuImg(t, "convert", "-f", "qcow2", "-O", "raw", src, byHand)
	mark := filepath.Join(t.TempDir(), "go")
	wrapper := script(t, "while [ ! -e "+mark+" ]; do sleep 0.02; done\nexec "+real+` "$@"`)
	h := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = wrapper })
	data := readFile(t, src)
	url := h.up.AddFile("disk.qcow2", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	wait(t, h.client, d.ID, "converting", func(d agentclient.Download) bool { return d.State == agentclient.StateConverting })
	if hl, err := h.client.Health(ctx(t)); err != nil || hl.ActiveDownloads != 1 {
		t.Errorf("health while converting: %d active downloads (err %v), want 1", hl.ActiveDownloads, err)
	}
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d = waitFinished(t, h.client, d.ID)
	if d.State != agentclient.StateCompleted {
		t.Fatalf("state %s, error %+v; want completed", d.State, d.Error)
	}
	got := readFile(t, d.Path)
	if want := readFile(t, byHand); int64(len(got)) != 64<<20 || !bytes.Equal(got, want) {
		t.Fatalf("published %d bytes, not what qemu-img convert gives by hand (%d bytes)", len(got), len(want))
	}
	if d.Format != "raw" || d.VirtualSizeBytes != 64<<20 {
		t.Errorf("format %q, virtual size %d; want raw, %d", d.Format, d.VirtualSizeBytes, 64<<20)
	}
	if d.Checksum != testenv.SHA256(data) || d.FileChecksum != testenv.SHA256(got) {
		t.Errorf("checksum %s, file checksum %s; want the source's %s and the raw file's %s", d.Checksum, d.FileChecksum, testenv.SHA256(data), testenv.SHA256(got))
	}
	assertNoWorkFiles(t, h.pool)
}

// TestConvertRawToQCOW2 downloads a raw image for a qcow2 pool: the
// published file is a qcow2 that qemu-img check passes and that holds
// the same disk as the source.
func TestConvertRawToQCOW2(t *testing.T) {
	raw := rawDisk(t)
	h := newHarness(t, nil)
	data := readFile(t, raw)
	url := h.up.AddFile("disk.raw", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.qcow2", Checksum: testenv.SHA256(data), ConvertTo: "qcow2"})
	d = waitFinished(t, h.client, d.ID)
	if d.State != agentclient.StateCompleted {
		t.Fatalf("state %s, error %+v; want completed", d.State, d.Error)
	}
	runQemuImg(t, "check", "-f", "qcow2", d.Path)
	runQemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, d.Path)
	if d.Format != "qcow2" || d.VirtualSizeBytes != 64<<20 || d.FileChecksum != testenv.SHA256(readFile(t, d.Path)) {
		t.Errorf("format %q, virtual size %d, file checksum %s; want qcow2, %d, the published file's", d.Format, d.VirtualSizeBytes, d.FileChecksum, 64<<20)
	}
	assertNoWorkFiles(t, h.pool)
}

// TestConvertToItsOwnFormatConvertsNothing asks for qcow2 on a qcow2
// image with a qemu-img that always fails: nothing runs, the vendor's
// bytes are published as they are.
func TestConvertToItsOwnFormatConvertsNothing(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = script(t, "echo must not run >&2; exit 1") })
	data := qemuImg(t, "qcow2", "1G")
	url := h.up.AddFile("disk.qcow2", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.qcow2", Checksum: testenv.SHA256(data), ConvertTo: "qcow2"})
	d = waitFinished(t, h.client, d.ID)
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	assertNoWorkFiles(t, h.pool)
}

// TestWithoutQemuImgNoConversion starts agents with and without qemu-img:
// only the one with it names "convert" in health; the other refuses a
// request to convert (retryable, so the worker tries a node that can)
// and still takes one that needs no conversion.
func TestWithoutQemuImgNoConversion(t *testing.T) {
	with := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = realQemuImg(t) })
	hl, err := with.client.Health(ctx(t))
	if err != nil || !slices.Contains(hl.Features, agentclient.FeatureConvert) {
		t.Fatalf("agent with qemu-img: health features %v (err %v), want %q among them", hl.Features, err, agentclient.FeatureConvert)
	}
	if hl.QemuImg == nil || hl.QemuImg.Path != realQemuImg(t) || hl.QemuImg.Missing != "" {
		t.Errorf("agent with qemu-img: health qemu_img %+v, want path %s", hl.QemuImg, realQemuImg(t))
	}
	missing := filepath.Join(t.TempDir(), "no-qemu-img")
	h := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = missing })
	hl, err = h.client.Health(ctx(t))
	if err != nil || slices.Contains(hl.Features, agentclient.FeatureConvert) {
		t.Fatalf("agent without qemu-img: health features %v (err %v), want no %q", hl.Features, err, agentclient.FeatureConvert)
	}
	if hl.QemuImg == nil || hl.QemuImg.Path != "" || !strings.Contains(hl.QemuImg.Missing, missing) || !strings.Contains(hl.QemuImg.Missing, "qemu-utils") {
		t.Errorf("agent without qemu-img: health qemu_img %+v, want no path and a reason naming %s and qemu-utils", hl.QemuImg, missing)
	}
	data := qemuImg(t, "qcow2", "16M")
	url := h.up.AddFile("disk.qcow2", data)
	_, err = h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "img", URL: url, PoolID: "pool-1", FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	fe, ok := fault.As(err)
	if !ok || fe.Code != fault.ConversionFailed || !fe.Retryable || !strings.Contains(fe.Message, "qemu-utils") {
		t.Fatalf("convert without qemu-img: %v; want a retryable conversion_failed that says to install qemu-utils", err)
	}
	d := h.start(agentclient.DownloadRequest{ID: "plain", URL: url, FileName: "disk.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, h.client, d.ID), h.pool, data, testenv.SHA256(data))
}

// TestConvertToUnknownFormatIsRefused: convert_to is raw, qcow2 or nothing.
func TestConvertToUnknownFormatIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	_, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "img", URL: h.up.FileURL("disk.qcow2"), PoolID: "pool-1", FileName: "disk.vmdk", ConvertTo: "vmdk"})
	if faultCode(err) != fault.InvalidRequest || !strings.Contains(err.Error(), "convert_to") {
		t.Fatalf("convert_to vmdk: %v; want invalid_request about convert_to", err)
	}
}

// TestFailedConversionLeavesNothing runs a qemu-img that fails: the
// download fails with conversion_failed and what qemu-img said, and
// neither the image nor any work file is left.
func TestFailedConversionLeavesNothing(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) {
		// It writes some output first, as a conversion cut short would.
		c.QemuImg = script(t, `for a; do last=$a; done; echo partial > "$last"; echo "qemu-img: broken on purpose" >&2; exit 1`)
	})
	data := qemuImg(t, "qcow2", "16M")
	url := h.up.AddFile("disk.qcow2", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	d = waitFinished(t, h.client, d.ID)
	assertFailed(t, d, h.pool, fault.ConversionFailed, false)
	if !strings.Contains(d.Error.Message, "broken on purpose") {
		t.Errorf("message %q does not carry qemu-img's words", d.Error.Message)
	}
	assertNoWorkFiles(t, h.pool)
}

// TestConversionPastMaxImageSizeIsRefusedFirst: a 16 MiB sparse qcow2
// whose raw form (1 GiB) is past --max-image-size fails too_large before
// qemu-img runs (it would fail the test with conversion_failed).
func TestConversionPastMaxImageSizeIsRefusedFirst(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) {
		c.MaxImageSize = 256 << 20
		c.QemuImg = script(t, "echo must not run >&2; exit 1")
	})
	data := qemuImg(t, "qcow2", "1G")
	url := h.up.AddFile("disk.qcow2", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	d = waitFinished(t, h.client, d.ID)
	assertFailed(t, d, h.pool, fault.TooLarge, false)
	assertNoWorkFiles(t, h.pool)
}

// TestConversionResultIsChecked runs qemu-img through wrappers that spoil
// the result: a qcow2 that qemu-img check refuses, a raw file shorter
// than the virtual size. Each fails conversion_failed, nothing left.
func TestConversionResultIsChecked(t *testing.T) {
	real := realQemuImg(t)
	raw := rawDisk(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	runQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	for _, c := range []struct {
		name, from, to, wrapper, says string
	}{
		{"qcow2 that check refuses", raw, "qcow2",
			`if [ "$1" = check ]; then echo "Leaked cluster 7 refcount=1 reference=0" >&2; exit 3; fi; exec ` + real + ` "$@"`, "Leaked cluster"},
		{"raw shorter than its virtual size", src, "raw",
			real + ` "$@" || exit 1; for a; do last=$a; done; truncate -s 1M "$last"`, "incomplete"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(cfg *nodeagent.Config) { cfg.QemuImg = script(t, c.wrapper) })
			data := readFile(t, c.from)
			url := h.up.AddFile("disk.img", data)
			d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk." + c.to, Checksum: testenv.SHA256(data), ConvertTo: c.to})
			d = waitFinished(t, h.client, d.ID)
			assertFailed(t, d, h.pool, fault.ConversionFailed, false)
			if !strings.Contains(d.Error.Message, c.says) {
				t.Errorf("message %q does not say %q", d.Error.Message, c.says)
			}
			assertNoWorkFiles(t, h.pool)
		})
	}
}

// TestCancelDuringConversion cancels a download while qemu-img runs (a
// wrapper that never goes on): it is killed, the download ends cancelled
// and no work file is left.
func TestCancelDuringConversion(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.QemuImg = script(t, "while :; do sleep 0.02; done") })
	data := qemuImg(t, "qcow2", "16M")
	url := h.up.AddFile("disk.qcow2", data)
	d := h.start(agentclient.DownloadRequest{ID: "img", URL: url, FileName: "disk.raw", Checksum: testenv.SHA256(data), ConvertTo: "raw"})
	wait(t, h.client, d.ID, "converting", func(d agentclient.Download) bool { return d.State == agentclient.StateConverting })
	if err := h.client.CancelDownload(ctx(t), d.ID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	d = waitFinished(t, h.client, d.ID)
	if d.State != agentclient.StateCancelled {
		t.Fatalf("state %s, error %+v; want cancelled", d.State, d.Error)
	}
	if _, err := os.Lstat(d.Path); err == nil {
		t.Errorf("a cancelled conversion published %s", d.Path)
	}
	assertNoWorkFiles(t, h.pool)
}
