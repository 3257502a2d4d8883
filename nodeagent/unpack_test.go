package nodeagent_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// compressors are the real tools that make the compressed test files, by
// the compression name the agent reports, with the vendors' extensions.
var compressors = []struct{ kind, tool, ext string }{
	{"xz", "xz", ".xz"}, {"gzip", "gzip", ".gz"}, {"bzip2", "bzip2", ".bz2"}, {"zstd", "zstd", ".zst"},
}

// compress runs a real compressor (xz, gzip, bzip2, zstd) over data.
func compress(t testing.TB, tool string, data []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s is missing: run `make test-deps`", tool)
	}
	cmd := exec.Command(tool, "-c", "-q")
	cmd.Stdin = bytes.NewReader(data)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -c: %v\n%s", tool, err, errOut.String())
	}
	return out.Bytes()
}

// assertNoWorkFiles fails if anything but records is left in the pool's
// work folder: partial data or a decompressed work file.
func assertNoWorkFiles(t *testing.T, poolDir string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(poolDir, agentclient.ImagesDir, ".downloads", "*~*"))
	if len(names) > 0 {
		t.Errorf("work files left in the pool: %v", names)
	}
}

// assertPublishedDecompressed checks a compressed download's end: the
// decompressed bytes published under the requested name, the compressed
// bytes' checksum as the source checksum, the published file's own sha256
// as file_checksum, and no work file left.
func assertPublishedDecompressed(t *testing.T, d agentclient.Download, poolDir string, image, compressed []byte, kind string) {
	t.Helper()
	if d.State != agentclient.StateCompleted || d.Error != nil {
		t.Fatalf("download %s: state %s, error %v; want completed", d.ID, d.State, d.Error)
	}
	got, err := os.ReadFile(filepath.Join(poolDir, agentclient.ImagesDir, d.FileName))
	if err != nil {
		t.Fatalf("published file: %v", err)
	}
	if !bytes.Equal(got, image) {
		t.Fatalf("published file is not the decompressed image (%d bytes, want %d)", len(got), len(image))
	}
	if d.Checksum != testenv.SHA256(compressed) {
		t.Errorf("checksum %s, want the compressed bytes' %s", d.Checksum, testenv.SHA256(compressed))
	}
	if d.FileChecksum != testenv.SHA256(image) {
		t.Errorf("file_checksum %s, want the published bytes' %s", d.FileChecksum, testenv.SHA256(image))
	}
	if d.Compression != kind || d.Format != "qcow2" {
		t.Errorf("compression %q, format %q; want %q, qcow2", d.Compression, d.Format, kind)
	}
	assertNoWorkFiles(t, poolDir)
}

// TestCompressedImagesArePublishedDecompressed: a qcow2 compressed by each
// real tool, named as vendors name it but requested under its image name
// with the vendor's checksum (of the compressed bytes), is published
// decompressed; the compression is told by the magic bytes, so a
// compressed file served under a plain name is recognised too.
func TestCompressedImagesArePublishedDecompressed(t *testing.T) {
	h := newHarness(t, nil)
	image := append(testenv.QCOW2Image(1<<20, 5), make([]byte, 2<<20)...)
	for _, c := range compressors {
		for _, served := range []string{"disk-" + c.kind + ".qcow2" + c.ext, "plain-" + c.kind} {
			t.Run(served, func(t *testing.T) {
				compressed := compress(t, c.tool, image)
				url := h.up.AddFile(served, compressed)
				id := strings.ReplaceAll(served, ".", "-")
				h.start(agentclient.DownloadRequest{ID: id, URL: url, FileName: id + ".qcow2", Checksum: testenv.SHA256(compressed)})
				d := waitFinished(t, h.client, id)
				assertPublishedDecompressed(t, d, h.pool, image, compressed, c.kind)
			})
		}
	}
}

// TestUncompressedDownloadReportsItsFileChecksum: file_checksum is the
// sha256 of the published bytes whatever algorithm the request's checksum
// uses, also across a dropped connection that the download resumes after.
func TestUncompressedDownloadReportsItsFileChecksum(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(3<<20, 6)
	url := h.up.AddFile("plain.qcow2", data)
	h.up.SetFault("plain.qcow2", testenv.Fault{DropAfterBytes: 1 << 20, Drops: 1})
	for _, sum := range []string{testenv.SHA256(data), testenv.SHA512(data)} {
		id := sum[:6]
		h.start(agentclient.DownloadRequest{ID: id, URL: url, FileName: id + ".qcow2", Checksum: sum})
		d := waitFinished(t, h.client, id)
		assertPublished(t, d, h.pool, data, sum)
		if d.FileChecksum != testenv.SHA256(data) || d.Compression != "none" {
			t.Errorf("%s request: file_checksum %s, compression %q; want %s, none", id, d.FileChecksum, d.Compression, testenv.SHA256(data))
		}
	}
}

// TestDamagedCompressedImagesAreRefused: a compressed file that matches
// its checksum but does not decompress (cut in half, or with a corrupt
// block) is the vendor's broken file: not_a_disk_image, not retried, and
// nothing left in the pool.
func TestDamagedCompressedImagesAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	image := testenv.QCOW2Image(2<<20, 7)
	xz := compress(t, "xz", image)
	corrupt := bytes.Clone(compress(t, "gzip", image))
	corrupt[len(corrupt)/2] ^= 0xff
	for _, c := range []struct {
		name string
		data []byte
		says string
	}{{"half-an-xz", xz[:len(xz)/2], "ends early"}, {"corrupt-gzip", corrupt, "damaged"}} {
		t.Run(c.name, func(t *testing.T) {
			url := h.up.AddFile(c.name, c.data)
			h.start(agentclient.DownloadRequest{ID: c.name, URL: url, FileName: c.name + ".qcow2", Checksum: testenv.SHA256(c.data)})
			d := waitFinished(t, h.client, c.name)
			assertFailed(t, d, h.pool, fault.NotADiskImage, false)
			assertNoWorkFiles(t, h.pool)
			if !strings.Contains(d.Error.Message, c.says) || !strings.Contains(d.Error.Message, "vendor published a damaged file") {
				t.Errorf("message %q does not say %q and whose the damage is", d.Error.Message, c.says)
			}
		})
	}
}

// TestDecompressionBombIsStopped: 200 MiB of zeros in a few KiB of zstd
// stops at the node's --max-image-size (too_large, for good), and where
// the pool's room is smaller than the output, at its reserve (disk_full,
// retryable: another pool may have the room); nothing is left either way.
func TestDecompressionBombIsStopped(t *testing.T) {
	bomb := compress(t, "zstd", make([]byte, 200<<20))
	t.Logf("bomb: %d bytes of zstd for 200 MiB", len(bomb))

	t.Run("past --max-image-size", func(t *testing.T) {
		h := newHarness(t, func(c *nodeagent.Config) { c.MaxImageSize = 64 << 20 })
		url := h.up.AddFile("bomb.img.zst", bomb)
		h.start(agentclient.DownloadRequest{ID: "bomb", URL: url, FileName: "bomb.img", Checksum: testenv.SHA256(bomb)})
		d := waitFinished(t, h.client, "bomb")
		assertFailed(t, d, h.pool, fault.TooLarge, false)
		assertNoWorkFiles(t, h.pool)
		if !strings.Contains(d.Error.Message, "--max-image-size") {
			t.Errorf("message %q does not name --max-image-size", d.Error.Message)
		}
	})

	t.Run("past the pool's room", func(t *testing.T) {
		dir, real := smallPool(t)
		h := newHarness(t, func(c *nodeagent.Config) { c.Pools[0].Dir = dir })
		if !real {
			written := 0 // only the job's goroutine writes
			nodeagent.SetWriteFault(h.srv, func(n int) error {
				if written += n; written > smallPoolSize {
					return syscall.ENOSPC
				}
				return nil
			})
		}
		url := h.up.AddFile("bomb.img.zst", bomb)
		h.start(agentclient.DownloadRequest{ID: "bomb", URL: url, FileName: "bomb.img", Checksum: testenv.SHA256(bomb)})
		d := waitFinished(t, h.client, "bomb")
		assertFailed(t, d, h.pool, fault.DiskFull, true)
		assertNoWorkFiles(t, h.pool)
		// On a real small file system the reserve stops it, before the
		// kernel's ENOSPC would (which leaves the pool without its reserve).
		if real && !strings.Contains(d.Error.Message, "--min-free") {
			t.Errorf("message %q: want the pool's reserve (--min-free) to stop the output", d.Error.Message)
		}
	})
}

// TestInterruptedCompressedDownloadResumes: a mirror that drops the
// connection mid-body costs a resume, not the file again: the compressed
// bytes are what is downloaded and resumed, once.
func TestInterruptedCompressedDownloadResumes(t *testing.T) {
	h := newHarness(t, nil)
	image := testenv.QCOW2Image(8<<20, 9) // random data: xz barely shrinks it
	compressed := compress(t, "xz", image)
	url := h.up.AddFile("drop.qcow2.xz", compressed)
	h.up.SetFault("drop.qcow2.xz", testenv.Fault{DropAfterBytes: int64(len(compressed)) / 2, Drops: 1})
	h.start(agentclient.DownloadRequest{ID: "drop", URL: url, FileName: "drop.qcow2", Checksum: testenv.SHA256(compressed)})
	d := waitFinished(t, h.client, "drop")
	assertPublishedDecompressed(t, d, h.pool, image, compressed, "xz")
	served := h.up.BytesServed("drop.qcow2.xz")
	if h.up.Requests("drop.qcow2.xz") < 2 || served > int64(len(compressed))*105/100 {
		t.Errorf("mirror served %d bytes in %d requests for a %d-byte file: want a resume that fetches at most 5%% twice",
			served, h.up.Requests("drop.qcow2.xz"), len(compressed))
	}
}

// TestAgentKilledWhileDecompressingDecompressesAgain is the crash test of
// decompression: the agent gets SIGKILL while it writes the decompressed
// work file. Started again, it keeps the verified compressed partial data
// (the mirror serves nothing more), removes the half-written work file,
// decompresses again and publishes.
func TestAgentKilledWhileDecompressingDecompressesAgain(t *testing.T) {
	up := testenv.NewUpstream(t)
	// 64 MiB in a few KiB of bzip2, which Go decodes slowly enough to
	// catch it at work.
	image := append(testenv.QCOW2Image(1<<20, 10), make([]byte, 63<<20)...)
	compressed := compress(t, "bzip2", image)
	url := up.AddFile("slow.qcow2.bz2", compressed)
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true})
	c := agent.Client()
	req := agentclient.DownloadRequest{ID: "slow", URL: url, PoolID: "pool-1", FileName: "slow.qcow2", Checksum: testenv.SHA256(compressed)}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(agent.PoolDir("pool-1"), agentclient.ImagesDir, ".downloads", "slow~"+agent.NodeID()+".unpack")
	wait(t, c, "slow", "decompressing", func(d agentclient.Download) bool {
		fi, err := os.Stat(work)
		return d.Finished() || (err == nil && fi.Size() > 0)
	})
	agent.Kill()
	if d, err := c.Download(ctx(t), "slow"); err == nil {
		t.Fatalf("killed agent still answers: %+v", d)
	}
	if _, err := os.Stat(work); err != nil {
		t.Fatalf("the agent finished before it was killed (work file: %v): nothing was tested", err)
	}
	servedBefore := up.BytesServed("slow.qcow2.bz2")

	agent.Restart()
	d := waitFinished(t, c, "slow")
	assertPublishedDecompressed(t, d, agent.PoolDir("pool-1"), image, compressed, "bzip2")
	if served := up.BytesServed("slow.qcow2.bz2"); served != servedBefore || servedBefore != int64(len(compressed)) {
		t.Errorf("mirror served %d bytes before the kill and %d in all for a %d-byte file: the restart must not download again", servedBefore, served, len(compressed))
	}
}
