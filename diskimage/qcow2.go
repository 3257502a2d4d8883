package diskimage

import (
	"strings"
)

// qcow2, as specified in qemu's docs/interop/qcow2.txt. All fields are
// big-endian.
const (
	qcow2Magic = "QFI\xfb"

	qcow2V2HeaderLen = 72
	qcow2V3HeaderLen = 104

	// qemu's own limits (block/qcow2.h); qemu refuses images beyond them.
	qcow2MinClusterBits = 9
	qcow2MaxClusterBits = 21
	qcow2MaxL1Bytes     = 32 << 20
	qcow2MaxRefTable    = 8 << 20
	qcow2MaxSnapshots   = 65536
	qcow2MaxBackingName = 1023

	// Incompatible feature bits.
	qcow2Dirty         = 1 << 0
	qcow2Corrupt       = 1 << 1
	qcow2ExternalData  = 1 << 2
	qcow2Compression   = 1 << 3
	qcow2ExtendedL2    = 1 << 4
	qcow2KnownIncompat = qcow2Dirty | qcow2Corrupt | qcow2ExternalData | qcow2Compression | qcow2ExtendedL2

	// Header extension types.
	qcow2ExtEnd          = 0
	qcow2ExtBackingFmt   = 0xE2792ACA
	qcow2ExtCrypto       = 0x0537BE77
	qcow2ExtDataFileName = 0x44415441

	// Bits 9-55 of an L1 or refcount table entry hold a cluster offset.
	qcow2OffsetMask = 0x00fffffffffffe00
)

func inspectQCOW2(f *file, head []byte) (Info, error) {
	if len(head) < qcow2V2HeaderLen {
		return Info{}, damaged("the qcow2 header is truncated (%d bytes)", len(head))
	}
	version := be32(head[4:])
	if version != 2 && version != 3 {
		return Info{}, notSupportedf("this is a qcow2 image of version %d; only versions 2 and 3 are supported: "+
			"convert it with qemu-img convert -O qcow2", version)
	}
	info := Info{Format: QCOW2, Version: int(version)}

	clusterBits := be32(head[20:])
	if clusterBits < qcow2MinClusterBits || clusterBits > qcow2MaxClusterBits {
		return Info{}, damaged("qcow2 cluster bits %d are outside %d-%d", clusterBits, qcow2MinClusterBits, qcow2MaxClusterBits)
	}
	cluster := int64(1) << clusterBits
	info.ClusterSize = cluster

	virtual := be64(head[24:])
	if virtual > 1<<62 {
		return Info{}, damaged("qcow2 virtual size %d is too large", virtual)
	}
	info.VirtualSize = int64(virtual)

	hdrLen := int64(qcow2V2HeaderLen)
	var incompat uint64
	if version == 3 {
		if len(head) < qcow2V3HeaderLen {
			return Info{}, damaged("the qcow2 v3 header is truncated (%d bytes)", len(head))
		}
		incompat = be64(head[72:])
		hdrLen = int64(be32(head[100:]))
		if hdrLen < qcow2V3HeaderLen || hdrLen > cluster {
			return Info{}, damaged("qcow2 header length %d is outside %d-%d", hdrLen, qcow2V3HeaderLen, cluster)
		}
		if refOrder := be32(head[96:]); refOrder > 6 {
			return Info{}, damaged("qcow2 refcount order %d is above 6", refOrder)
		}
	}
	if !f.within(0, hdrLen) || !f.within(0, cluster) {
		return Info{}, damaged("the qcow2 file (%d bytes) is shorter than its header cluster (%d bytes)", f.size, cluster)
	}

	// What would make qemu read another file comes first: that is the
	// refusal that matters most, whatever else is wrong.
	if off, n := be64(head[8:]), be32(head[16:]); off != 0 || n != 0 {
		return Info{}, unsafef("this qcow2 image has a backing file%s: a hypervisor would read that file from the host; "+
			"publish a self-contained image (qemu-img convert -O qcow2 flattens it)", backingName(f, off, n, cluster))
	}
	if incompat&qcow2ExternalData != 0 {
		return Info{}, unsafef("this qcow2 image keeps its data in an external data file%s; "+
			"publish a self-contained image (qemu-img convert -O qcow2)", dataFileName(f, hdrLen, cluster))
	}
	if incompat&qcow2Corrupt != 0 {
		return Info{}, damaged("the qcow2 header marks the image corrupt")
	}
	if unknown := incompat &^ qcow2KnownIncompat; unknown != 0 {
		return Info{}, damaged("the qcow2 header sets incompatible features 0x%x that qemu does not know", unknown)
	}

	encrypted, err := qcow2Extensions(f, hdrLen, cluster)
	if err != nil {
		return Info{}, err
	}
	info.Encrypted = encrypted || be32(head[32:]) != 0

	l2Bits := clusterBits - 3
	if incompat&qcow2ExtendedL2 != 0 {
		l2Bits = clusterBits - 4
	}
	shift := clusterBits + l2Bits
	needL1 := int64(virtual>>shift) + boolInt(virtual&(1<<shift-1) != 0)
	l1Size := int64(be32(head[36:]))
	if l1Size < needL1 {
		return Info{}, damaged("the qcow2 L1 table has %d entries, too few for a virtual size of %d bytes", l1Size, virtual)
	}
	l1Off := int64(be64(head[40:]))
	if err := qcow2Table(f, "L1 table", l1Off, l1Size, qcow2MaxL1Bytes/8, cluster); err != nil {
		return Info{}, err
	}
	if err := qcow2L2Tables(f, l1Off, l1Size, clusterBits, incompat&qcow2ExtendedL2 != 0); err != nil {
		return Info{}, err
	}

	refClusters := int64(be32(head[56:]))
	if refClusters == 0 || refClusters > qcow2MaxRefTable/cluster+boolInt(qcow2MaxRefTable%cluster != 0) {
		return Info{}, damaged("the qcow2 refcount table has %d clusters", refClusters)
	}
	if err := qcow2Table(f, "refcount table", int64(be64(head[48:])), refClusters*cluster/8, qcow2MaxRefTable/8, cluster); err != nil {
		return Info{}, err
	}

	if err := qcow2Snapshots(f, head, cluster); err != nil {
		return Info{}, err
	}
	return info, nil
}

// qcow2Table checks a table of 8-byte cluster offsets: that it lies inside
// the file, and that every cluster it points at does too.
func qcow2Table(f *file, name string, off, entries, maxEntries, cluster int64) error {
	if entries == 0 {
		return nil
	}
	if entries > maxEntries {
		return damaged("the qcow2 %s has %d entries, more than qemu allows (%d)", name, entries, maxEntries)
	}
	if off <= 0 || off%cluster != 0 {
		return damaged("the qcow2 %s offset %d is not a cluster boundary", name, off)
	}
	if !f.within(off, entries*8) {
		return unsafef("the qcow2 %s (%d entries at offset %d) points past the end of the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", name, entries, off, f.size)
	}
	return f.eachEntry(off, entries, 8, func(i int64, e []byte) error {
		target := int64(be64(e) & qcow2OffsetMask)
		if target == 0 {
			return nil
		}
		if target%cluster != 0 || !f.within(target, cluster) {
			return unsafef("entry %d of the qcow2 %s points at offset %d, outside the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", i, name, target, f.size)
		}
		return nil
	})
}

// qcow2L2Tables checks that every cluster the L2 tables map (the image's
// data) lies inside the file: a truncated image fails here. Distinct L2
// tables cannot hold more bytes than the file, so the reads are bounded by
// its size even when a crafted L1 table names one L2 table many times.
func qcow2L2Tables(f *file, l1Off, l1Size int64, clusterBits uint32, extended bool) error {
	cluster := int64(1) << clusterBits
	width := 8
	if extended {
		width = 16
	}
	// A compressed cluster's entry holds its offset in the low x bits.
	x := 62 - (clusterBits - 8)
	var read int64
	return f.eachEntry(l1Off, l1Size, 8, func(i int64, e []byte) error {
		l2 := int64(be64(e) & qcow2OffsetMask)
		if l2 == 0 {
			return nil
		}
		if read += cluster; read > f.size {
			return damaged("the qcow2 L1 table names more L2 tables than the file can hold")
		}
		return f.eachEntry(l2, cluster/int64(width), width, func(j int64, e []byte) error {
			v := be64(e)
			var off, n int64
			if v&(1<<62) != 0 {
				off, n = int64(v&(1<<x-1)), 1
			} else {
				off, n = int64(v&qcow2OffsetMask), cluster
			}
			if off != 0 && !f.within(off, n) {
				return unsafef("cluster %d of the qcow2 image lies at offset %d, outside the %d-byte file; "+
					"the image is truncated or crafted: download it again or check the source",
					i*(cluster/int64(width))+j, off, f.size)
			}
			return nil
		})
	})
}

// qcow2Extensions walks the header extensions, which qemu reads from the
// first cluster only. It refuses an external data file name and reports
// whether the image carries an encryption header.
func qcow2Extensions(f *file, off, cluster int64) (encrypted bool, err error) {
	for off+8 <= cluster {
		h, err := f.readAt(off, 8)
		if err != nil {
			return false, err
		}
		typ, n := be32(h), int64(be32(h[4:]))
		if typ == qcow2ExtEnd {
			return encrypted, nil
		}
		if n > cluster-off-8 {
			return false, damaged("qcow2 header extension 0x%08x (%d bytes) runs past the first cluster", typ, n)
		}
		switch typ {
		case qcow2ExtDataFileName:
			return false, unsafef("this qcow2 image names an external data file%s; "+
				"publish a self-contained image (qemu-img convert -O qcow2)", nameAt(f, off+8, n))
		case qcow2ExtCrypto:
			encrypted = true
		}
		off += 8 + (n+7)&^7
	}
	return encrypted, nil
}

// qcow2Snapshots checks each internal snapshot's L1 table: a snapshot is
// read when it is applied, so its tables must be inside the file too.
func qcow2Snapshots(f *file, head []byte, cluster int64) error {
	count := int64(be32(head[60:]))
	if count == 0 {
		return nil
	}
	if count > qcow2MaxSnapshots {
		return damaged("the qcow2 image has %d snapshots, more than qemu allows (%d)", count, qcow2MaxSnapshots)
	}
	off := int64(be64(head[64:]))
	if off <= 0 || off%cluster != 0 {
		return damaged("the qcow2 snapshot table offset %d is not a cluster boundary", off)
	}
	for i := int64(0); i < count; i++ {
		if !f.within(off, 40) {
			return unsafef("the qcow2 snapshot table points past the end of the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", f.size)
		}
		e, err := f.readAt(off, 40)
		if err != nil {
			return err
		}
		name := "L1 table of snapshot " + itoa(i)
		if err := qcow2Table(f, name, int64(be64(e)), int64(be32(e[8:])), qcow2MaxL1Bytes/8, cluster); err != nil {
			return err
		}
		extra, idLen, nameLen := int64(be32(e[36:])), int64(be16(e[12:])), int64(be16(e[14:]))
		off += (40 + extra + idLen + nameLen + 7) &^ 7
	}
	return nil
}

func backingName(f *file, off uint64, n uint32, cluster int64) string {
	if off == 0 || int64(off) >= cluster || n == 0 {
		return ""
	}
	return nameAt(f, int64(off), min(int64(n), qcow2MaxBackingName))
}

func dataFileName(f *file, hdrLen, cluster int64) string {
	off := hdrLen
	for off+8 <= cluster && f.within(off, 8) {
		h, err := f.readAt(off, 8)
		if err != nil || be32(h) == qcow2ExtEnd {
			return ""
		}
		n := int64(be32(h[4:]))
		if n > cluster-off-8 {
			return ""
		}
		if be32(h) == qcow2ExtDataFileName {
			return nameAt(f, off+8, n)
		}
		off += 8 + (n+7)&^7
	}
	return ""
}

// nameAt reads a file name stored in a header, for a message: bounded, and
// quoted so that a hostile name cannot forge log lines.
func nameAt(f *file, off, n int64) string {
	n = min(n, qcow2MaxBackingName)
	if n <= 0 || !f.within(off, n) {
		return ""
	}
	b, err := f.readAt(off, int(n))
	if err != nil {
		return ""
	}
	return " (" + quote(strings.TrimRight(string(b), "\x00")) + ")"
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
