package diskimage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTools fails (never skips) when the image tools are missing: the
// tests are seeded with real headers that only qemu-img writes.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"qemu-img"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run `make test-deps` (installs qemu-utils, xz-utils and zstd with apt-get)", tool)
		}
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// qemuImg runs qemu-img quietly.
func qemuImg(t testing.TB, args ...string) {
	t.Helper()
	run(t, "qemu-img", args...)
}

// create makes an image with qemu-img create in a temporary directory.
func create(t testing.TB, name, format, size string, opts ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	args := append([]string{"create", "-q", "-f", format}, opts...)
	qemuImg(t, append(args, path, size)...)
	return path
}

// dataRaw is a sparse 64 MiB raw disk with an MBR and data in a few places,
// so that images converted from it have allocated tables to check.
func dataRaw(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mbr(), 0); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1 << 20, 5<<20 + 12345, 40 << 20, 64<<20 - 4096} {
		if _, err := f.WriteAt([]byte(strings.Repeat("cloudimages ", 40)), off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// convert converts src to format with qemu-img convert.
func convert(t testing.TB, src, name, format string, opts ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	args := append([]string{"convert", "-q", "-O", format}, opts...)
	qemuImg(t, append(args, src, path)...)
	return path
}

// qemuVirtualSize is the virtual size qemu-img info reports for path read
// as format.
func qemuVirtualSize(t testing.TB, path, format string) int64 {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", "-f", format, path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.VirtualSize
}

// inspectPath inspects a file on disk.
func inspectPath(t testing.TB, path string) (Info, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Inspect(f, st.Size())
}

// patch overwrites bytes of a file in place.
func patch(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readAll(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func truncate(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func u32be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64be(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func u32le(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// mbr is a boot sector with one Linux partition and the 0x55AA signature.
func mbr() []byte {
	b := make([]byte, 512)
	e := b[446:]
	e[4] = 0x83                                            // Linux
	binary.LittleEndian.PutUint32(e[8:], 2048)             // first LBA
	binary.LittleEndian.PutUint32(e[12:], 64<<20/512-2048) // sectors
	b[510], b[511] = 0x55, 0xaa
	return b
}

// gptDisk is a 4 MiB raw disk with a protective MBR and a GPT header whose
// entries start at entriesLBA.
func gptDisk(t testing.TB, entriesLBA uint64) string {
	t.Helper()
	b := make([]byte, 4<<20)
	copy(b, mbr())
	b[446+4] = 0xee
	h := b[512:]
	copy(h, gptSignature)
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[32:], uint64(len(b)/512-1))
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	return writeFile(t, "gpt.raw", b)
}

// isoImage is a minimal ISO 9660 image: a primary volume descriptor of
// blocks 2 KiB blocks and a terminator, optionally with an MBR (hybrid).
func isoImage(t testing.TB, blocks uint32, hybrid bool) string {
	t.Helper()
	b := make([]byte, 20*2048)
	if hybrid {
		copy(b, mbr())
	}
	pvd := b[0x8000:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	binary.LittleEndian.PutUint32(pvd[80:], blocks)
	binary.BigEndian.PutUint32(pvd[84:], blocks)
	binary.LittleEndian.PutUint16(pvd[128:], 2048)
	binary.BigEndian.PutUint16(pvd[130:], 2048)
	term := b[0x8800:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	return writeFile(t, "x.iso", b)
}

// wantErr checks that err wraps target and mentions each of words.
func wantErr(t testing.TB, err, target error, words ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %q", err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
