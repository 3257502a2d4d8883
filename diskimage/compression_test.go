package diskimage

import (
	"path/filepath"
	"testing"
)

// TestDetectCompressionOnRealStreams compresses a qcow2 with the real tools
// and checks the compressor is told by its bytes, whatever the name says.
func TestDetectCompressionOnRealStreams(t *testing.T) {
	requireTools(t, "xz", "zstd", "gzip", "bzip2")
	src := create(t, "a.qcow2", "qcow2", "1G")
	dir := t.TempDir()
	cases := []struct{ tool, want string }{
		{"xz", XZ}, {"gzip", Gzip}, {"bzip2", Bzip2}, {"zstd", Zstd},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			out := filepath.Join(dir, "image.bin."+c.tool) // the name says nothing
			run(t, "sh", "-c", c.tool+" -c < "+src+" > "+out)
			head := readAll(t, out)[:6]
			if got := DetectCompression(head); got != c.want {
				t.Errorf("DetectCompression(% x) = %q, want %q", head, got, c.want)
			}
		})
	}
	if got := DetectCompression(readAll(t, src)[:6]); got != None {
		t.Errorf("uncompressed qcow2: %q, want none", got)
	}
	for _, head := range [][]byte{nil, {0x1f}, []byte("BZ"), []byte("BZhx"), {0xfd, '7', 'z', 'X', 'Z'}} {
		if got := DetectCompression(head); got != None {
			t.Errorf("DetectCompression(% x) = %q, want none", head, got)
		}
	}
}

func TestStripCompressionExt(t *testing.T) {
	for in, want := range map[string]string{
		"FreeBSD-14.1-RELEASE-amd64.qcow2.xz": "FreeBSD-14.1-RELEASE-amd64.qcow2",
		"disk.raw.gz":                         "disk.raw",
		"disk.img.bz2":                        "disk.img",
		"arch.qcow2.zst":                      "arch.qcow2",
		"DISK.VMDK.XZ":                        "DISK.VMDK",
		"disk.qcow2":                          "disk.qcow2",
		"disk.tar.gz":                         "disk.tar",
		".xz":                                 ".xz",
		"noext":                               "noext",
	} {
		if got := StripCompressionExt(in); got != want {
			t.Errorf("StripCompressionExt(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExt(t *testing.T) {
	for in, want := range map[string]string{
		QCOW2: ".qcow2", Raw: ".raw", VMDK: ".vmdk", VHD: ".vhd", VHDX: ".vhdx", VDI: ".vdi", ISO: ".iso",
		"vpc": ".vhd", "ova": "", "": "",
	} {
		if got := Ext(in); got != want {
			t.Errorf("Ext(%q) = %q, want %q", in, got, want)
		}
	}
}
