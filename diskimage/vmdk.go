package diskimage

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// VMDK hosted sparse extents, as in VMware's "Virtual Disk Format 5.0" and
// qemu's block/vmdk.c. Fields are little-endian; offsets count 512-byte
// sectors.
const (
	vmdkMagic = "KDMV"

	vmdkHeaderLen     = 512
	vmdkGDAtEnd       = 0xffffffffffffffff
	vmdkMaxDescriptor = 1 << 20 // qemu refuses larger descriptors
	vmdkMaxGTEs       = 512     // qemu's limit on grain table entries
	vmdkRedundantGT   = 1 << 1
	vmdkCompressed    = 1 << 16
)

func inspectVMDK(f *file, head []byte) (Info, error) {
	hdr, err := vmdkHeader(f, head)
	if err != nil {
		return Info{}, err
	}
	version := le32(hdr[4:])
	if version < 1 || version > 3 {
		return Info{}, notSupportedf("this is a vmdk sparse extent of version %d; versions 1 to 3 are supported", version)
	}
	flags := le32(hdr[8:])
	capacity, grain := le64(hdr[12:]), le64(hdr[20:])
	descOff, descLen := le64(hdr[28:]), le64(hdr[36:])
	gtes := le32(hdr[44:])
	rgdOff, gdOff := le64(hdr[48:]), le64(hdr[56:])

	virtual, ok := mulFits(int64(min(capacity, 1<<62)), 512)
	if !ok || capacity > 1<<62 {
		return Info{}, damaged("the vmdk capacity of %d sectors is too large", capacity)
	}
	if grain == 0 || grain&(grain-1) != 0 || grain > 1<<20 {
		return Info{}, damaged("the vmdk grain size of %d sectors is not a sane power of two", grain)
	}
	if gtes == 0 || gtes > vmdkMaxGTEs {
		return Info{}, damaged("the vmdk has %d grain table entries per table; qemu allows 1 to %d", gtes, vmdkMaxGTEs)
	}
	info := Info{Format: VMDK, VirtualSize: virtual, Version: int(version), ClusterSize: int64(grain) * 512,
		Subformat: "monolithicSparse"}
	if flags&vmdkCompressed != 0 {
		info.Subformat = "streamOptimized"
	}

	if descOff != 0 || descLen != 0 {
		createType, err := vmdkDescriptor(f, descOff, descLen)
		if err != nil {
			return Info{}, err
		}
		if createType != "" {
			info.Subformat = createType
		}
	}

	// The grain directory: one 4-byte entry per grain table.
	perGT := uint64(gtes) * grain
	tables := capacity/perGT + uint64(boolInt(capacity%perGT != 0))
	if gdOff == vmdkGDAtEnd {
		// Stream-optimized images written in one pass keep the real
		// offset in the footer, a copy of the header before the
		// end-of-stream marker.
		if !f.within(f.size-1024, vmdkHeaderLen) {
			return Info{}, damaged("the stream-optimized vmdk is too short to hold its footer")
		}
		footer, err := f.readAt(f.size-1024, vmdkHeaderLen)
		if err != nil {
			return Info{}, err
		}
		if !hasPrefix(footer, vmdkMagic) || le64(footer[56:]) == vmdkGDAtEnd {
			return Info{}, damaged("the stream-optimized vmdk has no footer with its grain directory: it is truncated")
		}
		gdOff = le64(footer[56:])
	}
	if err := vmdkDirectory(f, "grain directory", gdOff, tables, gtes); err != nil {
		return Info{}, err
	}
	if flags&vmdkRedundantGT != 0 && rgdOff != 0 && rgdOff != vmdkGDAtEnd {
		if err := vmdkDirectory(f, "redundant grain directory", rgdOff, tables, gtes); err != nil {
			return Info{}, err
		}
	}
	return info, nil
}

// vmdkHeader returns the 512-byte header from head (which holds the file's
// first bytes).
func vmdkHeader(f *file, head []byte) ([]byte, error) {
	if len(head) < vmdkHeaderLen {
		return nil, damaged("the vmdk header is truncated (%d bytes)", len(head))
	}
	return head[:vmdkHeaderLen], nil
}

// vmdkDirectory checks that a grain directory of n entries lies inside the
// file and that every grain table it names does too.
func vmdkDirectory(f *file, name string, sector, n uint64, gtes uint32) error {
	if n == 0 {
		return nil
	}
	off, ok := mulFits(int64(min(sector, 1<<62)), 512)
	if !ok || sector > 1<<62 || n > 1<<40 || !f.within(off, int64(n)*4) {
		return unsafef("the vmdk %s (%d entries at sector %d) points past the end of the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", name, n, sector, f.size)
	}
	// Distinct grain tables cannot hold more bytes than the file: that
	// bounds the reads even if a crafted directory repeats one table.
	var read int64
	return f.eachEntry(off, int64(n), 4, func(i int64, e []byte) error {
		gt := int64(le32(e))
		if gt == 0 {
			return nil
		}
		if !f.within(gt*512, int64(gtes)*4) {
			return unsafef("entry %d of the vmdk %s points at sector %d, outside the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", i, name, gt, f.size)
		}
		if read += int64(gtes) * 4; read > f.size {
			return damaged("the vmdk %s names more grain tables than the file can hold", name)
		}
		return f.eachEntry(gt*512, int64(gtes), 4, func(j int64, e []byte) error {
			// A grain (or, stream-optimized, its compressed marker)
			// must start inside the file; 1 is "zero grain".
			if g := int64(le32(e)); g > 1 && !f.within(g*512, 1) {
				return unsafef("grain %d of the vmdk lies at sector %d, outside the %d-byte file; "+
					"the image is truncated or crafted: download it again or check the source", i*int64(gtes)+j, g, f.size)
			}
			return nil
		})
	})
}

// vmdkDescriptor reads the descriptor embedded in a sparse vmdk and refuses
// one that makes the image read other files: extents other than the sparse
// file itself, or a parent.
func vmdkDescriptor(f *file, sector, count uint64) (createType string, err error) {
	if sector > 1<<40 || count > vmdkMaxDescriptor/512 {
		return "", damaged("the vmdk descriptor (%d sectors at sector %d) is larger than qemu accepts", count, sector)
	}
	off, n := int64(sector)*512, int64(count)*512
	if !f.within(off, n) {
		return "", unsafef("the vmdk descriptor (%d bytes at offset %d) lies past the end of the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", n, off, f.size)
	}
	var desc []byte
	for done := int64(0); done < n; done += maxChunk {
		b, err := f.readAt(off+done, int(min(maxChunk, n-done)))
		if err != nil {
			return "", err
		}
		desc = append(desc, b...)
	}
	if i := bytes.IndexByte(desc, 0); i >= 0 {
		desc = desc[:i]
	}
	d := parseDescriptor(desc)
	if d.parent {
		return "", unsafef("this vmdk is a differencing disk (its descriptor names a parent%s): a hypervisor would read "+
			"the parent from the host; publish a self-contained image (qemu-img convert -O vmdk)", d.parentHint)
	}
	var sparse int
	for _, e := range d.extents {
		switch e.kind {
		case "ZERO":
		case "SPARSE":
			sparse++
		default:
			return "", unsafef("this vmdk's descriptor names a %s extent in another file (%s); "+
				"publish a single-file image (qemu-img convert -O vmdk -o subformat=streamOptimized)", e.kind, quote(e.file))
		}
	}
	if sparse > 1 {
		return "", unsafef("this vmdk's descriptor names %d sparse extents (%s): all but one are other files; "+
			"publish a single-file image (qemu-img convert -O vmdk -o subformat=streamOptimized)", sparse, describeExtentList(d.extents))
	}
	switch d.createType {
	case "", "monolithicSparse", "streamOptimized":
	default:
		return "", unsafef("this vmdk's descriptor has createType %s, whose data lives in other files; "+
			"publish a monolithicSparse or streamOptimized vmdk", quote(d.createType))
	}
	return d.createType, nil
}

type vmdkExtent struct{ kind, file string }

type descriptor struct {
	createType string
	parent     bool
	parentHint string
	extents    []vmdkExtent
}

// parseDescriptor reads the lines of a vmdk text descriptor that matter
// here; it never fails (unknown lines are ignored, as qemu does).
func parseDescriptor(b []byte) descriptor {
	var d descriptor
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), vmdkMaxDescriptor)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, "\"") {
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), "\"")
			switch k {
			case "createType":
				d.createType = v
			case "parentCID":
				if !strings.EqualFold(v, "ffffffff") {
					d.parent = true
				}
			case "parentFileNameHint":
				d.parent = true
				d.parentHint = " " + quote(v)
			}
			continue
		}
		// RW 2097152 SPARSE "name.vmdk" [offset]
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		switch fields[0] {
		case "RW", "RDONLY", "NOACCESS":
		default:
			continue
		}
		if _, err := strconv.ParseUint(fields[1], 10, 64); err != nil {
			continue
		}
		e := vmdkExtent{kind: strings.ToUpper(fields[2])}
		if i := strings.IndexByte(line, '"'); i >= 0 {
			if j := strings.IndexByte(line[i+1:], '"'); j >= 0 {
				e.file = line[i+1 : i+1+j]
			}
		}
		d.extents = append(d.extents, e)
	}
	return d
}

// isVMDKDescriptor recognises a text descriptor file (monolithicFlat,
// twoGbMaxExtent*, vmfs…), which always keeps its data in other files.
func isVMDKDescriptor(head []byte) bool {
	h := bytes.TrimLeft(head, " \t\r\n")
	return bytes.HasPrefix(h, []byte("# Disk DescriptorFile"))
}

func describeExtents(head []byte) string {
	d := parseDescriptor(head)
	if len(d.extents) == 0 {
		return "no extents found in its first bytes"
	}
	return "extents " + describeExtentList(d.extents)
}

func describeExtentList(es []vmdkExtent) string {
	var names []string
	for i, e := range es {
		if i == 4 {
			names = append(names, "…")
			break
		}
		names = append(names, quote(e.file))
	}
	return strings.Join(names, ", ")
}
