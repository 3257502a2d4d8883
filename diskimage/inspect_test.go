package diskimage

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

// TestInspectRecognisesRealImages inspects images written by qemu-img, empty
// and with data, and checks the format, variant and virtual size against
// what qemu-img itself reports.
func TestInspectRecognisesRealImages(t *testing.T) {
	requireTools(t)
	raw := dataRaw(t)
	cases := []struct {
		name      string
		path      string
		want      Info
		qemuFmt   string // the qemu driver whose virtual size must match; "" to skip
		ignoreVer bool
	}{
		{"qcow2 v3", create(t, "a.qcow2", "qcow2", "10G"), Info{Format: QCOW2, Version: 3, ClusterSize: 65536}, "qcow2", false},
		{"qcow2 v2", create(t, "a.qcow2", "qcow2", "1G", "-o", "compat=0.10"), Info{Format: QCOW2, Version: 2, ClusterSize: 65536}, "qcow2", false},
		{"qcow2 small clusters", create(t, "a.qcow2", "qcow2", "1M", "-o", "cluster_size=512"), Info{Format: QCOW2, Version: 3, ClusterSize: 512}, "qcow2", false},
		{"qcow2 extended L2", create(t, "a.qcow2", "qcow2", "3G", "-o", "extended_l2=on"), Info{Format: QCOW2, Version: 3, ClusterSize: 65536}, "qcow2", false},
		{"qcow2 with data", convert(t, raw, "d.qcow2", "qcow2"), Info{Format: QCOW2, Version: 3, ClusterSize: 65536}, "qcow2", false},
		{"qcow2 v2 with data", convert(t, raw, "d.qcow2", "qcow2", "-o", "compat=0.10,cluster_size=4096"), Info{Format: QCOW2, Version: 2, ClusterSize: 4096}, "qcow2", false},
		{"qcow2 compressed", convert(t, raw, "c.qcow2", "qcow2", "-c"), Info{Format: QCOW2, Version: 3, ClusterSize: 65536}, "qcow2", false},
		{"qcow2 with a snapshot", snapshotted(t, raw), Info{Format: QCOW2, Version: 3, ClusterSize: 65536}, "qcow2", false},
		{"vmdk monolithicSparse", create(t, "a.vmdk", "vmdk", "1G"), Info{Format: VMDK, Version: 1, Subformat: "monolithicSparse", ClusterSize: 65536}, "vmdk", true},
		{"vmdk streamOptimized", create(t, "a.vmdk", "vmdk", "1G", "-o", "subformat=streamOptimized"), Info{Format: VMDK, Version: 3, Subformat: "streamOptimized", ClusterSize: 65536}, "vmdk", false},
		{"vmdk sparse with data", convert(t, raw, "d.vmdk", "vmdk"), Info{Format: VMDK, Version: 1, Subformat: "monolithicSparse", ClusterSize: 65536}, "vmdk", false},
		{"vmdk stream with data", convert(t, raw, "d.vmdk", "vmdk", "-o", "subformat=streamOptimized"), Info{Format: VMDK, Version: 3, Subformat: "streamOptimized", ClusterSize: 65536}, "vmdk", false},
		{"vhd dynamic", create(t, "a.vhd", "vpc", "1G"), Info{Format: VHD, Subformat: "dynamic", ClusterSize: 2 << 20}, "vpc", false},
		{"vhd dynamic with data", convert(t, raw, "d.vhd", "vpc"), Info{Format: VHD, Subformat: "dynamic", ClusterSize: 2 << 20}, "vpc", false},
		{"vhd fixed", create(t, "a.vhd", "vpc", "64M", "-o", "subformat=fixed"), Info{Format: VHD, Subformat: "fixed"}, "", false},
		{"vhdx", create(t, "a.vhdx", "vhdx", "1G"), Info{Format: VHDX, Version: 1, Subformat: "dynamic", ClusterSize: 8 << 20}, "vhdx", false},
		{"vhdx with data", convert(t, raw, "d.vhdx", "vhdx"), Info{Format: VHDX, Version: 1, Subformat: "dynamic", ClusterSize: 8 << 20}, "vhdx", false},
		{"vhdx fixed", create(t, "a.vhdx", "vhdx", "8M", "-o", "subformat=fixed"), Info{Format: VHDX, Version: 1, Subformat: "fixed", ClusterSize: 8 << 20}, "vhdx", false},
		{"vdi dynamic", create(t, "a.vdi", "vdi", "1G"), Info{Format: VDI, Version: 0x00010001, Subformat: "dynamic", ClusterSize: 1 << 20}, "vdi", false},
		{"vdi with data", convert(t, raw, "d.vdi", "vdi"), Info{Format: VDI, Version: 0x00010001, Subformat: "dynamic", ClusterSize: 1 << 20}, "vdi", false},
		{"vdi static", create(t, "a.vdi", "vdi", "16M", "-o", "static=on"), Info{Format: VDI, Version: 0x00010001, Subformat: "fixed", ClusterSize: 1 << 20}, "vdi", false},
		{"raw with an MBR", raw, Info{Format: Raw, PartitionTable: "mbr"}, "raw", false},
		{"raw with a GPT", gptDisk(t, 2), Info{Format: Raw, PartitionTable: "gpt"}, "raw", false},
		{"iso", isoImage(t, 20, false), Info{Format: ISO}, "raw", false},
		{"hybrid iso", isoImage(t, 20, true), Info{Format: ISO}, "raw", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := inspectPath(t, c.path)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if c.qemuFmt != "" {
				c.want.VirtualSize = qemuVirtualSize(t, c.path, c.qemuFmt)
			} else {
				c.want.VirtualSize = got.VirtualSize
			}
			if c.ignoreVer {
				c.want.Version = got.Version
			}
			if got != c.want {
				t.Errorf("Inspect = %+v\n      want %+v", got, c.want)
			}
		})
	}
}

func snapshotted(t *testing.T, raw string) string {
	t.Helper()
	path := convert(t, raw, "s.qcow2", "qcow2")
	qemuImg(t, "snapshot", "-c", "before", path)
	return path
}

// TestInspectFixedVHDSize checks the fixed vhd's virtual size from its
// footer: qemu itself reads a fixed vhd as raw, so it cannot say.
func TestInspectFixedVHDSize(t *testing.T) {
	requireTools(t)
	path := create(t, "a.vhd", "vpc", "64M", "-o", "subformat=fixed,force_size=on")
	got, err := inspectPath(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if got.VirtualSize != 64<<20 {
		t.Errorf("VirtualSize = %d, want %d", got.VirtualSize, 64<<20)
	}
}

// TestInspectRefusesImagesThatReadOtherFiles covers the images a hypervisor
// would open another host file for.
func TestInspectRefusesImagesThatReadOtherFiles(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	cases := []struct {
		name  string
		path  string
		words []string
	}{
		{"qcow2 backing file", create(t, "b.qcow2", "qcow2", "1G", "-b", "/etc/passwd", "-F", "raw"), []string{"backing file", "/etc/passwd", "qemu-img convert"}},
		{"qcow2 v2 backing file", create(t, "b.qcow2", "qcow2", "1G", "-o", "compat=0.10", "-b", "/etc/passwd", "-F", "raw"), []string{"backing file", "/etc/passwd"}},
		{"qcow2 external data file", create(t, "d.qcow2", "qcow2", "1G", "-o", "data_file="+filepath.Join(dir, "data.raw")), []string{"external data file", "data.raw"}},
		{"qcow2 data file name without the feature bit", dataFileExtensionOnly(t, dir), []string{"external data file", "data.raw"}},
		{"vmdk twoGbMaxExtentFlat", create(t, "t.vmdk", "vmdk", "3G", "-o", "subformat=twoGbMaxExtentFlat"), []string{"descriptor file", "t-f001.vmdk"}},
		{"vmdk monolithicFlat", create(t, "m.vmdk", "vmdk", "1G", "-o", "subformat=monolithicFlat"), []string{"descriptor file", "m-flat.vmdk"}},
		{"vmdk twoGbMaxExtentSparse", create(t, "s.vmdk", "vmdk", "3G", "-o", "subformat=twoGbMaxExtentSparse"), []string{"descriptor file", "s-s001.vmdk"}},
		{"sparse vmdk naming a flat extent", vmdkDescriptorEdit(t, `SPARSE "a.vmdk"`, `FLAT "/etc/passwd" 0`), []string{"FLAT extent", "/etc/passwd"}},
		{"sparse vmdk naming two sparse extents", vmdkDescriptorEdit(t, `SPARSE "a.vmdk"`, "SPARSE \"a.vmdk\"\nRW 2097152 SPARSE \"other.vmdk\""), []string{"2 sparse extents", "other.vmdk"}},
		{"sparse vmdk with a parent", vmdkDescriptorEdit(t, "parentCID=ffffffff", "parentCID=1234abcd"), []string{"differencing"}},
		{"vhd differencing", differencingVHD(t), []string{"differencing"}},
		{"vhdx with a parent", vhdxEdit(t, vhdxFileParams, func(item []byte) { item[4] |= vhdxHasParent }), []string{"differencing"}},
		{"vhdx with a parent locator", vhdxRetag(t, guid("BECA12AB-B2E6-4523-93EF-C309E000C746"), vhdxParentLocator), []string{"parent locator"}},
		{"vdi differencing", vdiType(t, vdiDiff), []string{"differencing"}},
		{"vdi undo", vdiType(t, vdiUndo), []string{"differencing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := inspectPath(t, c.path)
			wantErr(t, err, ErrUnsafe, c.words...)
		})
	}
}

// dataFileExtensionOnly is a qcow2 that names an external data file in a
// header extension but clears the incompatible feature bit.
func dataFileExtensionOnly(t *testing.T, dir string) string {
	t.Helper()
	path := create(t, "d2.qcow2", "qcow2", "1G", "-o", "data_file="+filepath.Join(dir, "data.raw"))
	patch(t, path, 72, u64be(0))
	return path
}

// vmdkDescriptorEdit rewrites the descriptor embedded in a qemu-made
// monolithicSparse vmdk.
func vmdkDescriptorEdit(t *testing.T, old, new string) string {
	t.Helper()
	path := create(t, "a.vmdk", "vmdk", "1G")
	b := readAll(t, path)
	off, n := le64(b[28:])*512, le64(b[36:])*512
	desc := b[off : off+n]
	end := bytes.IndexByte(desc, 0)
	edited := bytes.Replace(desc[:end], []byte(old), []byte(new), 1)
	if bytes.Equal(edited, desc[:end]) {
		t.Fatalf("descriptor has no %q:\n%s", old, desc[:end])
	}
	patch(t, path, int64(off), append(edited, 0))
	return path
}

// differencingVHD turns a dynamic vhd into a differencing one (qemu-img
// cannot create them) by setting the disk type in both footer copies.
func differencingVHD(t *testing.T) string {
	t.Helper()
	path := create(t, "d.vhd", "vpc", "1G")
	size := int64(len(readAll(t, path)))
	patch(t, path, 60, u32be(vhdDifferencing))
	patch(t, path, size-512+60, u32be(vhdDifferencing))
	return path
}

func vdiType(t *testing.T, typ uint32) string {
	t.Helper()
	path := create(t, "d.vdi", "vdi", "1G")
	patch(t, path, 0x4c, u32le(typ))
	return path
}

// vhdxMetadataEntry finds the metadata table entry with id in a qemu-made
// vhdx and returns the file offsets of the entry and of its item.
func vhdxMetadataEntry(t *testing.T, b []byte, id []byte) (entry, item int64) {
	t.Helper()
	regions := b[vhdxRegion1:]
	for i := 0; i < int(le32(regions[8:])); i++ {
		e := regions[16+32*i:]
		if !bytes.Equal(e[:16], vhdxMetadataGUID) {
			continue
		}
		meta := int64(le64(e[16:]))
		table := b[meta:]
		for j := 0; j < int(le16(table[10:])); j++ {
			m := table[32+32*j:]
			if bytes.Equal(m[:16], id) {
				return meta + 32 + 32*int64(j), meta + int64(le32(m[16:]))
			}
		}
	}
	t.Fatalf("no metadata item %x", id)
	return 0, 0
}

func vhdxEdit(t *testing.T, id []byte, edit func(item []byte)) string {
	t.Helper()
	path := create(t, "e.vhdx", "vhdx", "1G")
	b := readAll(t, path)
	_, item := vhdxMetadataEntry(t, b, id)
	edit(b[item:])
	patch(t, path, item, b[item:item+64])
	return path
}

func vhdxRetag(t *testing.T, from, to []byte) string {
	t.Helper()
	path := create(t, "r.vhdx", "vhdx", "1G")
	entry, _ := vhdxMetadataEntry(t, readAll(t, path), from)
	patch(t, path, entry, to)
	return path
}

// TestInspectRefusesDamagedHeaders covers headers crafted or cut so that a
// hypervisor would read outside the file.
func TestInspectRefusesDamagedHeaders(t *testing.T) {
	requireTools(t)
	raw := dataRaw(t)
	qcow := func(t *testing.T, edit func(path string, b []byte)) string {
		path := convert(t, raw, "c.qcow2", "qcow2")
		edit(path, readAll(t, path))
		return path
	}
	cases := []struct {
		name  string
		path  string
		words []string
	}{
		{"qcow2 L1 table beyond EOF", qcow(t, func(p string, b []byte) { patch(t, p, 40, u64be((uint64(len(b))+1<<16)&^0xffff)) }), []string{"L1 table", "past the end"}},
		{"qcow2 L1 entry beyond EOF", qcow(t, func(p string, b []byte) { patch(t, p, int64(be64(b[40:])), u64be(1<<40)) }), []string{"entry 0 of the qcow2 L1 table", "outside"}},
		{"qcow2 refcount table beyond EOF", qcow(t, func(p string, b []byte) { patch(t, p, 48, u64be(1<<40)) }), []string{"refcount table", "past the end"}},
		{"qcow2 huge L1 size", qcow(t, func(p string, b []byte) { patch(t, p, 36, u32be(0xffffffff)) }), []string{"L1 table", "more than qemu allows"}},
		{"qcow2 huge virtual size", qcow(t, func(p string, b []byte) { patch(t, p, 24, u64be(1<<63)) }), []string{"too large"}},
		{"qcow2 virtual size beyond its L1 table", qcow(t, func(p string, b []byte) { patch(t, p, 24, u64be(1<<50)) }), []string{"too few"}},
		{"qcow2 bad cluster bits", qcow(t, func(p string, b []byte) { patch(t, p, 20, u32be(40)) }), []string{"cluster bits"}},
		{"qcow2 marked corrupt", qcow(t, func(p string, b []byte) { patch(t, p, 72, u64be(qcow2Corrupt)) }), []string{"corrupt"}},
		{"qcow2 unknown incompatible feature", qcow(t, func(p string, b []byte) { patch(t, p, 72, u64be(1<<40)) }), []string{"incompatible features"}},
		{"qcow2 snapshot L1 beyond EOF", snapshotL1Beyond(t, raw), []string{"snapshot 0", "past the end"}},
		{"qcow2 truncated header", writeFile(t, "t.qcow2", readAll(t, convert(t, raw, "c.qcow2", "qcow2"))[:50]), []string{"truncated"}},
		{"qcow2 cut short", cutBy(t, convert(t, raw, "c.qcow2", "qcow2"), 64<<10), []string{"cluster", "outside"}},
		{"vmdk cut short", cutBy(t, convert(t, raw, "c.vmdk", "vmdk"), 64<<10), []string{"grain", "outside"}},
		{"vmdk grain directory beyond EOF", cut(t, convert(t, raw, "c.vmdk", "vmdk"), 12<<10), []string{"grain directory", "past the end"}},
		{"stream vmdk cut short", cut(t, convert(t, raw, "c.vmdk", "vmdk", "-o", "subformat=streamOptimized"), 100*512), []string{"grain", "outside"}},
		{"vmdk huge descriptor", patched(t, create(t, "a.vmdk", "vmdk", "1G"), 36, u64leb(1<<30)), []string{"descriptor"}},
		{"vmdk bad grain size", patched(t, create(t, "a.vmdk", "vmdk", "1G"), 20, u64leb(3)), []string{"grain size"}},
		{"vhd without its footer", cutBy(t, create(t, "a.vhd", "vpc", "1G"), 512), []string{"no footer"}},
		{"vhd block beyond EOF", cutKeepFooter(t, convert(t, raw, "c.vhd", "vpc"), 1<<20), []string{"block", "outside"}},
		{"fixed vhd cut short", fixedVHDCut(t), []string{"truncated"}},
		{"vhdx cut short", cut(t, convert(t, raw, "c.vhdx", "vhdx"), 1<<20), []string{"region"}},
		{"vhdx with a bad region table checksum", patched(t, create(t, "a.vhdx", "vhdx", "1G"), vhdxRegion1+16, []byte{1}, vhdxRegion2+16, []byte{1}), []string{"region table"}},
		{"vdi cut short", cut(t, convert(t, raw, "c.vdi", "vdi"), 1<<20), []string{"outside"}},
		{"vdi block map beyond EOF", patched(t, create(t, "a.vdi", "vdi", "1G"), 0x154, u32le(1<<30)), []string{"block map"}},
		{"iso cut short", cut(t, isoImage(t, 1000, false), 20*2048), []string{"truncated"}},
		{"gpt entries beyond EOF", gptDisk(t, 1<<20), []string{"GPT", "outside"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := inspectPath(t, c.path)
			wantErr(t, err, ErrUnsafe, c.words...)
		})
	}
}

func u64leb(v uint64) []byte { return append(u32le(uint32(v)), u32le(uint32(v>>32))...) }

// patched applies (offset, bytes) pairs to path and returns it.
func patched(t *testing.T, path string, edits ...any) string {
	t.Helper()
	for i := 0; i < len(edits); i += 2 {
		off := edits[i].(int)
		patch(t, path, int64(off), edits[i+1].([]byte))
	}
	return path
}

func cut(t *testing.T, path string, size int64) string {
	t.Helper()
	truncate(t, path, size)
	return path
}

func cutBy(t *testing.T, path string, n int64) string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return cut(t, path, st.Size()-n)
}

// cutKeepFooter removes n bytes before a vhd's footer, as a truncated
// download that still ends in a footer would look.
func cutKeepFooter(t *testing.T, path string, n int) string {
	t.Helper()
	b := readAll(t, path)
	footer := b[len(b)-512:]
	return writeFile(t, "cut.vhd", append(append([]byte{}, b[:len(b)-512-n]...), footer...))
}

// fixedVHDCut moves a fixed vhd's footer forward, as a truncated download
// that still ends in a footer would look.
func fixedVHDCut(t *testing.T) string {
	t.Helper()
	path := create(t, "f.vhd", "vpc", "8M", "-o", "subformat=fixed")
	b := readAll(t, path)
	footer := b[len(b)-512:]
	return writeFile(t, "cut.vhd", append(append([]byte{}, b[:1<<20]...), footer...))
}

func snapshotL1Beyond(t *testing.T, raw string) string {
	t.Helper()
	path := snapshotted(t, raw)
	b := readAll(t, path)
	patch(t, path, int64(be64(b[64:])), u64be(1<<40))
	return path
}

// TestInspectNamesWhatIsNoDiskImage checks that the message says what the
// bytes are and which images are supported.
func TestInspectNamesWhatIsNoDiskImage(t *testing.T) {
	requireTools(t, "xz", "zstd", "bzip2")
	qcow := create(t, "a.qcow2", "qcow2", "1G")
	var zipBuf, tarBuf, tgzBuf bytes.Buffer
	zw := zip.NewWriter(&zipBuf)
	w, _ := zw.Create("disk.qcow2")
	w.Write(readAll(t, qcow))
	zw.Close()
	tw := tar.NewWriter(&tarBuf)
	tw.WriteHeader(&tar.Header{Name: "disk.vmdk", Mode: 0o644, Size: 512})
	tw.Write(make([]byte, 512))
	tw.Close()
	gz := gzip.NewWriter(&tgzBuf)
	gz.Write(tarBuf.Bytes())
	gz.Close()
	xz := filepath.Join(t.TempDir(), "a.qcow2.xz")
	run(t, "sh", "-c", "xz -c "+qcow+" > "+xz)
	zst := filepath.Join(t.TempDir(), "a.qcow2.zst")
	run(t, "zstd", "-q", qcow, "-o", zst)

	cases := []struct {
		name  string
		path  string
		words []string
	}{
		{"zip", writeFile(t, "a.zip", zipBuf.Bytes()), []string{"this is a zip archive, not a disk image", "extract"}},
		{"tar", writeFile(t, "a.ova", tarBuf.Bytes()), []string{"this is a tar archive", "OVA"}},
		{"gzip tar", writeFile(t, "a.tar.gz", tgzBuf.Bytes()), []string{"gzip-compressed", ".tar.gz"}},
		{"xz", xz, []string{"xz-compressed", "decompress"}},
		{"zstd", zst, []string{"zstd-compressed"}},
		{"html", writeFile(t, "a.html", []byte("\n  <!DOCTYPE html><html><body>Sign in</body></html>")), []string{"HTML page", "check the URL"}},
		{"unrecognised bytes", writeFile(t, "a.bin", bytes.Repeat([]byte("hello "), 1000)), []string{"no disk image format recognised", "declare its format as raw"}},
		{"empty", writeFile(t, "empty", nil), []string{"empty"}},
		{"raw without a partition table", create(t, "a.raw", "raw", "16M"), []string{"declare its format as raw"}},
		{"qcow2 version 4", patched(t, create(t, "a.qcow2", "qcow2", "1G"), 4, u32be(4)), []string{"version 4", "2 and 3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := inspectPath(t, c.path)
			wantErr(t, err, ErrNotDiskImage, append(c.words, "supported disk images are qcow2")...)
		})
	}
}

// TestInspectDeclared checks the declared format: raw accepts bytes with no
// partition table but never an archive, and a mismatch is an error.
func TestInspectDeclared(t *testing.T) {
	requireTools(t)
	rawNoTable := create(t, "a.raw", "raw", "16M")
	qcow := create(t, "a.qcow2", "qcow2", "1G")
	vhd := create(t, "a.vhd", "vpc", "1G")
	zipFile := writeFile(t, "a.zip", []byte("PK\x03\x04rest of a zip"))
	cases := []struct {
		name, path, declared string
		want                 Info
		err                  error
	}{
		{"raw declared raw", rawNoTable, "raw", Info{Format: Raw, VirtualSize: 16 << 20}, nil},
		{"raw declared img", rawNoTable, "img", Info{Format: Raw, VirtualSize: 16 << 20}, nil},
		{"raw declared nothing", rawNoTable, "", Info{}, ErrNotDiskImage},
		{"raw declared qcow2", rawNoTable, "qcow2", Info{}, ErrNotDiskImage},
		{"qcow2 declared qcow2", qcow, "QCOW2", Info{Format: QCOW2, VirtualSize: 1 << 30, Version: 3, ClusterSize: 65536}, nil},
		{"qcow2 declared raw", qcow, "raw", Info{}, ErrFormatMismatch},
		{"qcow2 declared vmdk", qcow, "vmdk", Info{}, ErrFormatMismatch},
		{"qcow2 declared ova", qcow, "ova", Info{}, ErrFormatMismatch},
		{"vhd declared vpc", vhd, "vpc", Info{Format: VHD, VirtualSize: qemuVirtualSize(t, vhd, "vpc"), Subformat: "dynamic", ClusterSize: 2 << 20}, nil},
		{"zip declared raw", zipFile, "raw", Info{}, ErrNotDiskImage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := os.Open(c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			got, err := InspectDeclared(f, st.Size(), c.declared)
			if c.err != nil {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("InspectDeclared = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCheckDeclaredMessageSaysWhatToDo(t *testing.T) {
	err := CheckDeclared(Info{Format: QCOW2}, "raw")
	wantErr(t, err, ErrFormatMismatch, "declares raw", "qcow2 image", "fix the declared format")
	if err := CheckDeclared(Info{Format: VMDK}, ""); err != nil {
		t.Errorf("no declaration: %v", err)
	}
}

// TestInspectRefusesRepeatedTables checks that a crafted L1 table naming
// one L2 table over and over is refused, not read again and again.
func TestInspectRefusesRepeatedTables(t *testing.T) {
	requireTools(t)
	path := convert(t, dataRaw(t), "r.qcow2", "qcow2", "-o", "cluster_size=512")
	b := readAll(t, path)
	l1, n := be64(b[40:]), int(be32(b[36:]))
	var l2 []byte
	for i := 0; i < n && l2 == nil; i++ {
		if e := b[int(l1)+8*i:][:8]; be64(e) != 0 {
			l2 = e
		}
	}
	if int64(n)*512 <= int64(len(b)) {
		t.Fatalf("%d L2 tables of 512 bytes fit in the %d-byte file; the test needs more", n, len(b))
	}
	patch(t, path, int64(l1), bytes.Repeat(l2, n))
	_, err := inspectPath(t, path)
	wantErr(t, err, ErrUnsafe, "more L2 tables than the file can hold")
}

// TestReadsAreBoundedByTheFileSize checks the backstop behind every table
// walk: in all, Inspect reads at most the file's size and a little more.
func TestReadsAreBoundedByTheFileSize(t *testing.T) {
	const size = 1 << 20
	f := &file{r: bytes.NewReader(make([]byte, size)), size: size}
	var read int64
	for {
		if _, err := f.readAt(0, maxChunk); err != nil {
			wantErr(t, err, ErrUnsafe, "overlap or repeat")
			break
		}
		read += maxChunk
	}
	if read > size+readSlack {
		t.Errorf("read %d bytes of a %d-byte file", read, size)
	}
}

// TestInspectStreamOptimizedVMDKWithFooter covers stream-optimized vmdks as
// VMware writes them in one pass: the header says "grain directory at the
// end" and the footer, a header copy before the end-of-stream marker, holds
// its offset. qemu-img writes the offset in the header, so the test moves it.
func TestInspectStreamOptimizedVMDKWithFooter(t *testing.T) {
	requireTools(t)
	src := readAll(t, convert(t, dataRaw(t), "s.vmdk", "vmdk", "-o", "subformat=streamOptimized"))
	header := append([]byte{}, src[:512]...)
	marker := make([]byte, 512)
	copy(marker, u64leb(1))
	copy(marker[12:], u32le(3)) // footer marker
	withFooter := append(append(append(append([]byte{}, src...), marker...), header...), make([]byte, 512)...)
	copy(withFooter[56:], u64leb(vmdkGDAtEnd))

	info, err := inspectPath(t, writeFile(t, "f.vmdk", withFooter))
	if err != nil || info.Format != VMDK || info.Subformat != "streamOptimized" || info.VirtualSize != 64<<20 {
		t.Fatalf("Inspect = %+v, %v; want a 64 MiB streamOptimized vmdk", info, err)
	}

	noFooter := append([]byte{}, src...)
	copy(noFooter[56:], u64leb(vmdkGDAtEnd))
	_, err = inspectPath(t, writeFile(t, "n.vmdk", noFooter))
	wantErr(t, err, ErrUnsafe, "footer")
}
