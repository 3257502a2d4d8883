package decompress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/quantix/cloudimages/diskimage"
)

// variant is one decoder: a kind, how NewReader is asked, the compressor
// tool that makes its test data, and what Tool must say.
type variant struct {
	name, kind, compressor string
	opts                   []Option
	toolSays               string
}

var variants = []variant{
	{"xz tool", diskimage.XZ, "xz", nil, "XZ Utils"},
	{"xz pure Go", diskimage.XZ, "xz", []Option{PureGo()}, "github.com/ulikunitz/xz"},
	{"gzip", diskimage.Gzip, "gzip", nil, "github.com/klauspost/compress/gzip"},
	{"bzip2", diskimage.Bzip2, "bzip2", nil, "compress/bzip2"},
	{"zstd", diskimage.Zstd, "zstd", nil, "github.com/klauspost/compress/zstd"},
}

func TestRoundTripOfTheToolsOutput(t *testing.T) {
	data := payload(8 << 20)
	want := sha256.Sum256(data)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			if got := diskimage.DetectCompression(compressed[:6]); got != v.kind {
				t.Fatalf("the test data is %q, want %q", got, v.kind)
			}
			r := openReader(t, v.kind, bytes.NewReader(compressed), v.opts...)
			if !strings.Contains(r.Tool(), v.toolSays) {
				t.Errorf("Tool() = %q, want it to name %q", r.Tool(), v.toolSays)
			}
			sum, n, err := readAllOf(t, r)
			if err != nil || n != int64(len(data)) || sum != want {
				t.Fatalf("got %d bytes (sha256 match %v), %v; want %d bytes, the same sha256, no error", n, sum == want, err, len(data))
			}
			if _, err := r.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("Read after the end: %v, want io.EOF", err)
			}
		})
	}
}

func TestRoundTripOfGoEncodersOutput(t *testing.T) {
	data := payload(4 << 20)
	want := sha256.Sum256(data)
	encode := map[string]func(io.Writer) (io.WriteCloser, error){
		diskimage.XZ: func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) },
		diskimage.Gzip: func(w io.Writer) (io.WriteCloser, error) {
			return gzip.NewWriterLevel(w, gzip.DefaultCompression)
		},
		diskimage.Zstd: func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) },
	}
	for _, v := range variants {
		enc, ok := encode[v.kind]
		if !ok {
			continue // no Go encoder (bzip2)
		}
		t.Run(v.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := enc(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			sum, n, err := readAllOf(t, openReader(t, v.kind, &buf, v.opts...))
			if err != nil || sum != want {
				t.Fatalf("got %d bytes (sha256 match %v), %v", n, sum == want, err)
			}
		})
	}
}

func TestNoneIsPassedThrough(t *testing.T) {
	data := payload(1 << 20)
	r := openReader(t, diskimage.None, bytes.NewReader(data))
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("none: %d bytes, %v; want the input as it is", len(got), err)
	}
}

func TestUnknownKindIsRefused(t *testing.T) {
	_, err := NewReader(context.Background(), "zip", strings.NewReader("PK"))
	if err == nil || !strings.Contains(err.Error(), "xz, gzip, bzip2, zstd") {
		t.Fatalf("NewReader(zip): %v, want an error naming the supported kinds", err)
	}
}

func TestXZFallsBackToGoWithoutTheTool(t *testing.T) {
	data := payload(2 << 20)
	compressed := compressWith(t, "xz", data)
	t.Setenv("PATH", t.TempDir()) // no xz on it
	r := openReader(t, diskimage.XZ, bytes.NewReader(compressed))
	if !strings.Contains(r.Tool(), "ulikunitz/xz") {
		t.Fatalf("without the xz tool Tool() = %q, want the Go decoder", r.Tool())
	}
	if sum, _, err := readAllOf(t, r); err != nil || sum != sha256.Sum256(data) {
		t.Fatalf("Go fallback: sha256 match %v, %v", sum == sha256.Sum256(data), err)
	}
}

func TestTruncatedStreamIsErrTruncated(t *testing.T) {
	data := payload(4 << 20)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			for _, cut := range []int{len(compressed) / 2, len(compressed) - 1, 3, 0} {
				_, _, err := readAllOf(t, openReader(t, v.kind, bytes.NewReader(compressed[:cut]), v.opts...))
				if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrCorrupt) {
					t.Errorf("cut to %d of %d bytes: %v, want ErrTruncated (and ErrCorrupt)", cut, len(compressed), err)
				}
				if err != nil && !strings.Contains(err.Error(), "download it again") {
					t.Errorf("cut to %d bytes: %q does not say what to do", cut, err)
				}
			}
		})
	}
}

func TestFlippedByteIsErrCorrupt(t *testing.T) {
	data := payload(4 << 20)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			flipOneByte(compressed, data)
			sum, _, err := readAllOf(t, openReader(t, v.kind, bytes.NewReader(compressed), v.opts...))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a flipped byte: %v (output matches %v), want ErrCorrupt", err, sum == sha256.Sum256(data))
			}
			if errors.Is(err, ErrTruncated) {
				t.Errorf("a flipped byte in a whole stream: %v, want ErrCorrupt, not ErrTruncated", err)
			}
		})
	}
}

// failingReader gives its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestSourceErrorIsNotCorrupt(t *testing.T) {
	data := payload(4 << 20)
	dropped := errors.New("connection reset by peer")
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			src := &failingReader{data: compressed[:len(compressed)/2], err: dropped}
			_, _, err := readAllOf(t, openReader(t, v.kind, src, v.opts...))
			if !errors.Is(err, dropped) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("the source failed: %v, want its error and not ErrCorrupt", err)
			}
		})
	}
}

func TestBombStopsAtTheLimit(t *testing.T) {
	const limit = 100 << 20
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			bomb := bombFile(t, v.compressor, 64) // 1 GiB of zeros
			f, err := os.Open(bomb)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := openReader(t, v.kind, f, append(v.opts, Limit(limit))...)
			var pid int
			if v.name == "xz tool" {
				pid = xzPid(t, r)
			}
			_, n, err := readAllOf(t, r)
			if !errors.Is(err, ErrTooLarge) || n != limit {
				t.Fatalf("1 GiB from a %s bomb, limit %d: %d bytes, %v; want %d bytes and ErrTooLarge", v.compressor, limit, n, err, limit)
			}
			if pid != 0 {
				requireGone(t, pid)
			}
		})
	}
}

func TestOutputOfExactlyTheLimitIsAccepted(t *testing.T) {
	data := payload(1 << 20)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			_, n, err := readAllOf(t, openReader(t, v.kind, bytes.NewReader(compressed), append(v.opts, Limit(int64(len(data))))...))
			if err != nil || n != int64(len(data)) {
				t.Fatalf("limit = the output's size: %d bytes, %v; want all and no error", n, err)
			}
			_, _, err = readAllOf(t, openReader(t, v.kind, bytes.NewReader(compressed), append(v.opts, Limit(int64(len(data)-1)))...))
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("limit one byte short: %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestCancelKillsAndReapsXZ(t *testing.T) {
	bomb := bombFile(t, "xz", 64)
	f, err := os.Open(bomb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := NewReader(ctx, diskimage.XZ, f)
	if err != nil {
		t.Fatal(err)
	}
	pid := xzPid(t, r)
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v, want context.Canceled", err)
	}
	requireGone(t, pid) // killed and reaped before Read returned
	r.Close()
	waitGoroutines(t, before)
}

func TestCancelStopsGoDecoders(t *testing.T) {
	for _, v := range variants[1:] {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, payload(4<<20))
			ctx, cancel := context.WithCancel(context.Background())
			r, err := NewReader(ctx, v.kind, bytes.NewReader(compressed), v.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			cancel()
			if _, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("Read after cancel: %v, want context.Canceled", err)
			}
		})
	}
}

func TestCloseBeforeTheEndStopsTheDecoder(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			bomb := bombFile(t, v.compressor, 64)
			f, err := os.Open(bomb)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			before := runtime.NumGoroutine()
			r, err := NewReader(context.Background(), v.kind, f, v.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			if v.name == "xz tool" {
				pid = xzPid(t, r)
			}
			if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close before the end: %v, want nil", err)
			}
			if pid != 0 {
				requireGone(t, pid)
			}
			waitGoroutines(t, before)
			if _, err := r.Read(make([]byte, 1)); err == nil {
				t.Error("Read after Close succeeded")
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// The agent hashes the compressed bytes as they pass (the vendor's checksum
// names them): at the end of the output every compressed byte must have
// been read, or that hash would be of a prefix.
func TestEndOfOutputHasReadAllTheInput(t *testing.T) {
	data := payload(2 << 20)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			compressed := compressWith(t, v.compressor, data)
			twice := append(bytes.Clone(compressed), compressed...) // two streams, one after the other
			src := &countingReader{r: bytes.NewReader(twice)}
			_, n, err := readAllOf(t, openReader(t, v.kind, src, v.opts...))
			if err != nil || n != 2*int64(len(data)) {
				t.Fatalf("two concatenated streams: %d bytes, %v; want %d", n, err, 2*len(data))
			}
			if src.n != len(twice) {
				t.Fatalf("at the end of the output %d of %d compressed bytes were read", src.n, len(twice))
			}
		})
	}
}
