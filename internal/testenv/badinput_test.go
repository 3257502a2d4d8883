package testenv

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
)

// randomBytes are bytes no compressor can shrink much, so a corrupt byte
// lands in compressed data.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(1)).Read(b)
	return b
}

// decompressTool runs `tool -dc` over data, as a user would.
func decompressTool(t *testing.T, tool string, data []byte) ([]byte, error) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(data), &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s -dc: %v: %s", tool, err, stderr.String())
	}
	return out.Bytes(), nil
}

func TestCompressedPayloadsRoundTripThroughTheTools(t *testing.T) {
	data := append(QCOW2Image(64<<10, 7), randomBytes(64<<10)...)
	cases := []struct {
		tool, magic string
		of          func([]byte) []byte
	}{
		{"xz", "\xfd7zXZ\x00", func(b []byte) []byte { return XzOf(t, b) }},
		{"gzip", "\x1f\x8b", GzipOf},
		{"zstd", "\x28\xb5\x2f\xfd", func(b []byte) []byte { return ZstdOf(t, b) }},
		{"bzip2", "BZh", func(b []byte) []byte { return Bzip2Of(t, b) }},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			packed := c.of(data)
			if !bytes.HasPrefix(packed, []byte(c.magic)) {
				t.Fatalf("%s output starts % x, want the magic % x", c.tool, packed[:min(8, len(packed))], c.magic)
			}
			got, err := decompressTool(t, c.tool, packed)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip through %s: %d bytes, %v; want the %d bytes back", c.tool, len(got), err, len(data))
			}
			// Cut short or with a corrupt block, the real tool refuses it.
			if _, err := decompressTool(t, c.tool, Truncated(packed, len(packed)/2)); err == nil {
				t.Errorf("%s accepts the stream truncated to half", c.tool)
			}
			if _, err := decompressTool(t, c.tool, CorruptByte(packed, len(packed)/2)); err == nil {
				t.Errorf("%s accepts the stream with a corrupt byte in the middle", c.tool)
			}
		})
	}
}

func TestTruncatedAndCorruptByteCopy(t *testing.T) {
	data := []byte("abcdef")
	if got := Truncated(data, 4); string(got) != "abcd" {
		t.Errorf("Truncated(abcdef, 4) = %q", got)
	}
	if got := Truncated(data, 99); string(got) != "abcdef" {
		t.Errorf("Truncated(abcdef, 99) = %q", got)
	}
	if got := CorruptByte(data, -1); string(got[:5]) != "abcde" || got[5] != 'f'^0xff {
		t.Errorf("CorruptByte(abcdef, -1) = %q", got)
	}
	if got := CorruptByte(data, 0); got[0] == 'a' || string(got[1:]) != "bcdef" {
		t.Errorf("CorruptByte(abcdef, 0) = %q", got)
	}
	if string(data) != "abcdef" {
		t.Errorf("the helpers changed their argument: %q", data)
	}
}

func TestArchivesHoldTheFile(t *testing.T) {
	data := QCOW2Image(4096, 3)
	z := ZipOf("disk.qcow2", data)
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil || len(zr.File) != 1 || zr.File[0].Name != "disk.qcow2" {
		t.Fatalf("ZipOf: %v, files %v", err, zr)
	}
	f, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, data) {
		t.Errorf("ZipOf: file holds %d bytes (%v), want %d", len(got), err, len(data))
	}
	if !bytes.HasPrefix(z, []byte("PK\x03\x04")) {
		t.Errorf("ZipOf starts % x, want PK\\x03\\x04", z[:4])
	}

	tarball := TarOf("disk.raw", data)
	cmd := exec.Command("tar", "-xOf", "-", "disk.raw")
	cmd.Stdin = bytes.NewReader(tarball)
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("tar -xO of TarOf: %d bytes, %v; want %d", len(got), err, len(data))
	}
	if string(tarball[257:262]) != "ustar" {
		t.Errorf("TarOf has no ustar magic at 257: %q", tarball[257:262])
	}
}

// countZeros counts the bytes of r, failing at the first that is not zero.
type countZeros struct{ n, nonzero int64 }

func (c *countZeros) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != 0 {
			c.nonzero++
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestZeroBombsAreSmallAndExpand(t *testing.T) {
	const size = 32 << 20
	for _, kind := range []string{"xz", "gzip", "zstd", "bzip2"} {
		t.Run(kind, func(t *testing.T) {
			bomb := ZeroBomb(t, kind, size)
			if len(bomb) == 0 || len(bomb) > size/500 {
				t.Fatalf("%s bomb of %d zeros is %d bytes, want a small fraction", kind, size, len(bomb))
			}
			var count countZeros
			cmd := exec.Command(kind, "-dc")
			cmd.Stdin, cmd.Stdout = bytes.NewReader(bomb), &count
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s -dc: %v", kind, err)
			}
			if count.n != size || count.nonzero != 0 {
				t.Errorf("%s bomb expands to %d bytes (%d not zero), want %d zeros", kind, count.n, count.nonzero, size)
			}
		})
	}
	t.Run("unknown kind", func(t *testing.T) {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			ZeroBomb(ft, "lz4", 1)
		}()
		if !strings.Contains(ft.msg, "xz, gzip, zstd or bzip2") {
			t.Errorf("ZeroBomb(lz4) failed with %q, want the kinds it knows", ft.msg)
		}
	})
}

// fatalRecorder records a Fatalf's message instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
