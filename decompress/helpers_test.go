package decompress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireTools fails (never skips) when a compressor the tests run is missing.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run `make test-deps` (Debian: apt-get install xz-utils zstd bzip2 gzip)", tool)
		}
	}
}

// payload is n bytes like a disk image's: 64 KiB blocks, zeros and
// pseudo-random in turn (so compressed files have both kinds of block).
func payload(n int) []byte {
	out := make([]byte, n)
	rnd := rand.NewChaCha8([32]byte{1})
	for off := 0; off < n; off += 64 << 10 {
		if (off/(64<<10))%2 == 1 {
			rnd.Read(out[off:min(n, off+64<<10)])
		}
	}
	return out
}

// compressed caches compressWith's results: the tests compress the same
// payloads many times, and xz is slow on a loaded machine.
var compressed sync.Map

// compressWith runs `tool -c` over data and returns the compressed bytes
// (a copy the caller may change).
func compressWith(t *testing.T, tool string, data []byte) []byte {
	t.Helper()
	requireTools(t, tool)
	key := tool + " " + hex.EncodeToString(sumOf(data))
	if b, ok := compressed.Load(key); ok {
		return bytes.Clone(b.([]byte))
	}
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -c: %v: %s", tool, err, stderr.String())
	}
	compressed.Store(key, bytes.Clone(out.Bytes()))
	return out.Bytes()
}

func sumOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// flipOneByte changes one byte of compressed inside a block's data rather
// than a header: a run of data's pseudo-random bytes (stored as they are by
// most compressors) when compressed holds one, else its middle byte.
func flipOneByte(compressed, data []byte) {
	mid := len(data) / 2 / (128 << 10) * (128 << 10) // a zero block…
	needle := data[mid+(64<<10)+1000:][:64]          // …and into the random one after it
	i := bytes.Index(compressed, needle)
	if i < 0 {
		i = len(compressed)/2 - 32
	}
	compressed[i+32] ^= 0x55
}

// bombFile writes a file of kind that decompresses to copies × 16 MiB of
// zeros: one compressed 16 MiB stream, written copies times (every kind
// takes concatenated streams), so nothing large is held or compressed.
func bombFile(t *testing.T, tool string, copies int) string {
	t.Helper()
	one := compressWith(t, tool, make([]byte, 16<<20))
	path := filepath.Join(t.TempDir(), "bomb."+tool)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for range copies {
		w.Write(one)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readAllOf decompresses everything and returns the sha256 of the output,
// its length and the error that ended it (nil at a clean end).
func readAllOf(t *testing.T, r *Reader) ([32]byte, int64, error) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, err
}

func openReader(t *testing.T, kind string, compressed io.Reader, opts ...Option) *Reader {
	t.Helper()
	r, err := NewReader(context.Background(), kind, compressed, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// xzPid is the pid of r's xz process; the test fails when none runs.
func xzPid(t *testing.T, r *Reader) int {
	t.Helper()
	p, ok := r.dec.(*xzProcess)
	if !ok {
		t.Fatalf("decoder is %s, want the xz tool", r.Tool())
	}
	return p.cmd.Process.Pid
}

// requireGone fails when process pid still exists (running or a zombie
// not reaped).
func requireGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		state, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		t.Fatalf("xz process %d still exists (kill -0: %v; /proc stat: %s)", pid, err, state)
	}
}

// waitGoroutines polls until no more goroutines run than before (the
// decoder's have ended), failing after a while.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before: a decoder's goroutine leaked:\n%s",
				runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
