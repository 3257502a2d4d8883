package testenv

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"testing"
)

// Bad inputs for the mirror to serve (Upstream.AddFile): archives where a
// disk image is expected, compressed streams made by the real tools,
// truncated or corrupt copies, and decompression bombs. Each returns new
// bytes; none changes its argument.

// ZipOf returns a zip archive holding one file, name, with data: what a
// vendor's "download as zip" gives where a disk image was expected.
func ZipOf(name string, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		panic("testenv.ZipOf: " + err.Error()) // writes to memory cannot fail
	}
	return buf.Bytes()
}

// TarOf returns a tar archive holding one file, name, with data (Debian,
// for one, publishes its raw cloud images as disk.raw in a .tar.xz).
func TarOf(name string, data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	if err == nil {
		_, err = tw.Write(data)
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		panic("testenv.TarOf: " + err.Error())
	}
	return buf.Bytes()
}

// GzipOf returns data gzip-compressed (by Go's compress/gzip, which writes
// the same format as gzip(1)).
func GzipOf(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		panic("testenv.GzipOf: " + err.Error())
	}
	if err := zw.Close(); err != nil {
		panic("testenv.GzipOf: " + err.Error())
	}
	return buf.Bytes()
}

// XzOf returns data compressed by the xz tool (xz-utils), as vendors make
// their .xz images.
func XzOf(t testing.TB, data []byte) []byte {
	t.Helper()
	return compressWith(t, "xz", bytes.NewReader(data))
}

// ZstdOf returns data compressed by the zstd tool.
func ZstdOf(t testing.TB, data []byte) []byte {
	t.Helper()
	return compressWith(t, "zstd", bytes.NewReader(data))
}

// Bzip2Of returns data compressed by the bzip2 tool.
func Bzip2Of(t testing.TB, data []byte) []byte {
	t.Helper()
	return compressWith(t, "bzip2", bytes.NewReader(data))
}

// Truncated returns the first keep bytes of data (all of it when keep is
// larger): a stream cut short, whose end marker and checksum are missing.
func Truncated(data []byte, keep int) []byte {
	keep = min(max(keep, 0), len(data))
	return bytes.Clone(data[:keep])
}

// CorruptByte returns a copy of data with the byte at offset at inverted
// (at < 0 counts from the end: -1 is the last byte). Inside a compressed
// block it makes a corrupt block, which the decompressor's own check (or
// the image's checksum) must catch.
func CorruptByte(data []byte, at int) []byte {
	out := bytes.Clone(data)
	if at < 0 {
		at += len(out)
	}
	out[at] ^= 0xff
	return out
}

// ZeroBomb returns size bytes of zeros compressed by kind ("xz", "gzip",
// "zstd" or "bzip2"): a few kilobytes that decompress past any limit. The
// zeros are streamed through the tool, never held in memory, so size can
// be many gigabytes (at the fastest level, xz and bzip2 still take some
// seconds per GiB).
func ZeroBomb(t testing.TB, kind string, size int64) []byte {
	t.Helper()
	level := "-1" // fast; on zeros hardly larger than the best
	if kind == "gzip" {
		level = "-9" // gzip's ratio tops out near 1000:1, and only at -9
	}
	return compressWith(t, kind, io.LimitReader(zeros{}, size), level)
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// compressWith runs the compressor tool over in, with extra arguments
// (a level), and returns its output.
func compressWith(t testing.TB, tool string, in io.Reader, extra ...string) []byte {
	t.Helper()
	args := map[string][]string{
		"xz":    {"-c", "-T1"},
		"gzip":  {"-c", "-n"},
		"zstd":  {"-c", "-q"},
		"bzip2": {"-c"},
	}[tool]
	if args == nil {
		t.Fatalf("testenv: no compressor %q: use xz, gzip, zstd or bzip2", tool)
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("testenv: %s is not installed (apt-get install xz-utils zstd bzip2 gzip): %v", tool, err)
	}
	args = append(args, extra...)
	var out, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: %s %v: %v: %s", tool, args, err, stderr.String())
	}
	return out.Bytes()
}
