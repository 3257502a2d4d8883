package diskimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzInspect inspects a file made of head, pad zero bytes and tail: the
// seeds are real images' first few KiB and last sectors (footers), with the
// zeros between them left virtual, so a small seed stands for a large image.
func FuzzInspect(f *testing.F) {
	f.Add([]byte(qcow2Magic), uint32(0), []byte(nil))
	f.Fuzz(func(t *testing.T, head []byte, pad uint32, tail []byte) {
		pad %= maxFuzzSize // a huge file only makes each run slow
		checkInspect(t, &fuzzFile{size: int64(len(head)) + int64(pad) + int64(len(tail)),
			chunks: []chunk{{0, head}, {int64(len(head)) + int64(pad), tail}}})
	})
}

// maxFuzzSize bounds the files the fuzzers make: Inspect may read up to a
// file's size, and the fuzzers should try many files per second.
const maxFuzzSize = 256 << 20

// FuzzInspectSparse inspects a sparse file given as chunks (see
// decodeSparse), for formats whose headers lie far apart, such as vhdx.
func FuzzInspectSparse(f *testing.F) {
	f.Fuzz(func(t *testing.T, size uint32, enc []byte) {
		size %= maxFuzzSize
		checkInspect(t, decodeSparse(int64(size), enc))
	})
}

// checkInspect asserts what must hold on any input: no panic (the fuzzer
// catches those), every read inside the file and through a bounded buffer,
// bounded total reading, and a sane result.
func checkInspect(t *testing.T, ff *fuzzFile) {
	for _, declared := range []string{"", Raw} {
		ff.total = 0
		start := time.Now()
		info, err := InspectDeclared(ff, ff.size, declared)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Inspect took %v on a %d-byte file, reading %d bytes: %v", d, ff.size, ff.total, err)
		}
		if ff.outside != "" {
			t.Fatal(ff.outside)
		}
		// Tables lie inside the file: reading more than it means
		// reading some again.
		if limit := ff.size + readSlack; ff.total > limit {
			t.Fatalf("read %d bytes of a %d-byte file", ff.total, ff.size)
		}
		if err != nil {
			if !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrNotDiskImage) && !errors.Is(err, ErrFormatMismatch) {
				t.Fatalf("untyped error: %v", err)
			}
			continue
		}
		if !isFormat(info.Format) || info.VirtualSize < 0 {
			t.Fatalf("bad info %+v", info)
		}
	}
}

type chunk struct {
	off  int64
	data []byte
}

// fuzzFile is a sparse file in memory: zeros except for its chunks (later
// chunks win). It records reads outside the file and the bytes read.
type fuzzFile struct {
	size    int64
	chunks  []chunk
	total   int64
	outside string
}

func (f *fuzzFile) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > maxChunk {
		f.outside = fmt.Sprintf("a read of %d bytes, more than the %d-byte bound", len(p), maxChunk)
	}
	if off < 0 || off+int64(len(p)) > f.size {
		f.outside = fmt.Sprintf("a read of %d bytes at %d, outside the %d-byte file", len(p), off, f.size)
		return 0, fmt.Errorf("outside")
	}
	f.total += int64(len(p))
	clear(p)
	for _, c := range f.chunks {
		lo, hi := max(off, c.off), min(off+int64(len(p)), c.off+int64(len(c.data)))
		if lo < hi {
			copy(p[lo-off:hi-off], c.data[lo-c.off:hi-c.off])
		}
	}
	return len(p), nil
}

// decodeSparse reads chunks encoded as (uint32 offset, uint16 length,
// bytes)…, all little-endian; an encoding cut short ends the list.
func decodeSparse(size int64, enc []byte) *fuzzFile {
	f := &fuzzFile{size: size}
	for len(enc) >= 6 {
		off, n := int64(binary.LittleEndian.Uint32(enc)), int(binary.LittleEndian.Uint16(enc[4:]))
		enc = enc[6:]
		n = min(n, len(enc))
		f.chunks = append(f.chunks, chunk{off, enc[:n]})
		enc = enc[n:]
	}
	for _, c := range f.chunks {
		f.size = max(f.size, c.off+int64(len(c.data)))
	}
	return f
}

// encodeSparse is decodeSparse's inverse for an image: its non-zero
// 512-byte sectors, runs of them as chunks.
func encodeSparse(b []byte) []byte {
	var enc []byte
	for i := 0; i < len(b); {
		end := min(i+512, len(b))
		if !bytes.ContainsFunc(b[i:end], func(r rune) bool { return r != 0 }) {
			i = end
			continue
		}
		j := end
		for j < len(b) && j-i < 65024 {
			k := min(j+512, len(b))
			if !bytes.ContainsFunc(b[j:k], func(r rune) bool { return r != 0 }) {
				break
			}
			j = k
		}
		enc = binary.LittleEndian.AppendUint32(enc, uint32(i))
		enc = binary.LittleEndian.AppendUint16(enc, uint16(j-i))
		enc = append(enc, b[i:j]...)
		i = j
	}
	return enc
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz from images qemu-img makes now")

// seedImages are the images the fuzz seeds come from.
func seedImages(t *testing.T) map[string]string {
	raw := dataRaw(t)
	dir := t.TempDir()
	return map[string]string{
		"qcow2-v3":         create(t, "a.qcow2", "qcow2", "10G"),
		"qcow2-v2":         create(t, "a.qcow2", "qcow2", "1G", "-o", "compat=0.10"),
		"qcow2-data-512":   convert(t, raw, "d.qcow2", "qcow2", "-o", "cluster_size=512"),
		"qcow2-backing":    create(t, "b.qcow2", "qcow2", "1G", "-b", "/etc/passwd", "-F", "raw"),
		"qcow2-data-file":  create(t, "d.qcow2", "qcow2", "1G", "-o", "data_file="+filepath.Join(dir, "x.raw")),
		"qcow2-snapshot":   snapshotted(t, raw),
		"vmdk-sparse":      create(t, "a.vmdk", "vmdk", "1G"),
		"vmdk-stream-data": convert(t, raw, "d.vmdk", "vmdk", "-o", "subformat=streamOptimized"),
		"vmdk-descriptor":  create(t, "f.vmdk", "vmdk", "3G", "-o", "subformat=twoGbMaxExtentFlat"),
		"vhd-dynamic-data": convert(t, raw, "d.vhd", "vpc"),
		"vhd-fixed":        create(t, "f.vhd", "vpc", "4M", "-o", "subformat=fixed"),
		"vhdx":             create(t, "a.vhdx", "vhdx", "1G"),
		"vdi-data":         convert(t, raw, "d.vdi", "vdi"),
		"raw-mbr":          raw,
		"raw-gpt":          gptDisk(t, 2),
		"iso":              isoImage(t, 20, true),
	}
}

// TestFuzzSeeds checks that each format has its seeds under testdata/fuzz;
// with -update-seeds it writes them from images qemu-img makes.
func TestFuzzSeeds(t *testing.T) {
	requireTools(t)
	images := seedImages(t)
	for name, path := range images {
		b := readAll(t, path)
		headFile := filepath.Join("testdata", "fuzz", "FuzzInspect", name)
		sparseFile := filepath.Join("testdata", "fuzz", "FuzzInspectSparse", name)
		if !*updateSeeds {
			// A seed stands for its image: Inspect must say the same of
			// both, so the fuzzer starts from images that get far.
			// (An iso's and a vhdx's headers lie past the head seed's 16 KiB: only
			// their sparse seeds are whole.)
			info, err := inspectPath(t, path)
			want := outcome(info, err)
			for _, p := range []string{headFile, sparseFile} {
				ff := readSeed(t, p)
				if ff == nil || ((name == "vhdx" || name == "iso") && p == headFile) {
					continue
				}
				if got := outcome(Inspect(ff, ff.size)); got != want {
					t.Errorf("seed %s: Inspect says %s, of its image %s: run go test ./diskimage -run TestFuzzSeeds -update-seeds", p, got, want)
				}
			}
			continue
		}
		head := bytes.TrimRight(b[:min(len(b), 16<<10)], "\x00")
		var tail []byte
		if len(b) > 16<<10 {
			tail = bytes.TrimLeft(b[max(16<<10, len(b)-2048):], "\x00")
		}
		pad := uint32(len(b) - len(head) - len(tail))
		writeSeed(t, headFile, fmt.Sprintf("[]byte(%s)\nuint32(%d)\n[]byte(%s)\n", strconv.Quote(string(head)), pad, strconv.Quote(string(tail))))
		writeSeed(t, sparseFile, fmt.Sprintf("uint32(%d)\n[]byte(%s)\n", len(b), strconv.Quote(string(encodeSparse(b)))))
	}
}

// outcome summarises what Inspect said: the info, or the kind of error.
func outcome(info Info, err error) string {
	for _, e := range []error{ErrUnsafe, ErrNotDiskImage} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return fmt.Sprintf("%+v %v", info, err)
}

// readSeed reads a seed written by writeSeed back into the file it stands for.
func readSeed(t *testing.T, path string) *fuzzFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("seed %s is missing: run go test ./diskimage -run TestFuzzSeeds -update-seeds", path)
		return nil
	}
	var args []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
		args = append(args, line[open+1:end])
	}
	unquote := func(s string) []byte {
		u, err := strconv.Unquote(s)
		if err != nil {
			t.Fatalf("seed %s: %v", path, err)
		}
		return []byte(u)
	}
	number := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("seed %s: %v", path, err)
		}
		return n
	}
	if len(args) == 3 {
		head, pad, tail := unquote(args[0]), number(args[1]), unquote(args[2])
		return &fuzzFile{size: int64(len(head)) + pad + int64(len(tail)),
			chunks: []chunk{{0, head}, {int64(len(head)) + pad, tail}}}
	}
	return decodeSparse(number(args[0]), unquote(args[1]))
}

func writeSeed(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("go test fuzz v1\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
}
