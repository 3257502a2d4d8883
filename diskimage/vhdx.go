package diskimage

import (
	"bytes"
	"hash/crc32"
)

// VHDX, as in Microsoft's "VHDX Format Specification" v1.0. Fields are
// little-endian; GUIDs are stored in Microsoft's mixed-endian layout and
// written below as those bytes.
const (
	vhdxMagic        = "vhdxfile"
	vhdxHeader1      = 64 << 10
	vhdxHeader2      = 128 << 10
	vhdxHeaderLen    = 4 << 10
	vhdxRegion1      = 192 << 10
	vhdxRegion2      = 256 << 10
	vhdxRegionLen    = 64 << 10
	vhdxMaxEntries   = 2047
	vhdxMetaTableLen = 64 << 10
	vhdxMB           = 1 << 20
	vhdxMaxSize      = 64 << 40 // 64 TiB, the format's limit

	vhdxHasParent = 1 << 1
)

var (
	vhdxBATGUID       = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxMetadataGUID  = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxFileParams    = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxVirtualSize   = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxLogicalSector = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vhdxParentLocator = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
	castagnoli        = crc32.MakeTable(crc32.Castagnoli)
)

func inspectVHDX(f *file) (Info, error) {
	if err := vhdxCurrentHeader(f); err != nil {
		return Info{}, err
	}
	bat, meta, err := vhdxRegions(f)
	if err != nil {
		return Info{}, err
	}
	m, err := vhdxMetadata(f, meta)
	if err != nil {
		return Info{}, err
	}
	info := Info{Format: VHDX, Version: 1, VirtualSize: m.size, ClusterSize: m.block, Subformat: "dynamic"}
	if m.leaveAllocated {
		info.Subformat = "fixed"
	}
	return info, vhdxBAT(f, bat, m)
}

// vhdxCurrentHeader checks the newer of the two headers that is valid and
// refuses an image with a log still to replay (replaying writes the image).
func vhdxCurrentHeader(f *file) error {
	var best []byte
	for _, off := range []int64{vhdxHeader1, vhdxHeader2} {
		if !f.within(off, vhdxHeaderLen) {
			continue
		}
		h, err := f.readAt(off, vhdxHeaderLen)
		if err != nil {
			return err
		}
		if !hasPrefix(h, "head") || !crcOK(h, 4) {
			continue
		}
		if best == nil || le64(h[8:]) > le64(best[8:]) {
			best = h
		}
	}
	if best == nil {
		return damaged("the vhdx has no valid header (both copies are missing or fail their checksum)")
	}
	if v := le16(best[66:]); v != 1 {
		return notSupportedf("this is a vhdx of version %d; version 1 is supported", v)
	}
	if !bytes.Equal(best[48:64], make([]byte, 16)) {
		return notSupportedf("this vhdx has a log that must be replayed before it can be read " +
			"(it was not closed cleanly): open it once in Hyper-V or run qemu-img check -r all on it, then publish it again")
	}
	return nil
}

type vhdxRegion struct{ off, length int64 }

// vhdxRegions reads the first valid region table and returns the BAT and
// metadata regions, refusing regions outside the file and required regions
// this package does not know.
func vhdxRegions(f *file) (bat, meta vhdxRegion, err error) {
	var table []byte
	for _, off := range []int64{vhdxRegion1, vhdxRegion2} {
		if !f.within(off, vhdxRegionLen) {
			continue
		}
		t, err := f.readAt(off, vhdxRegionLen)
		if err != nil {
			return bat, meta, err
		}
		if hasPrefix(t, "regi") && crcOK(t, 4) {
			table = t
			break
		}
	}
	if table == nil {
		return bat, meta, damaged("the vhdx has no valid region table (both copies are missing or fail their checksum)")
	}
	n := int(le32(table[8:]))
	if n > vhdxMaxEntries {
		return bat, meta, damaged("the vhdx region table has %d entries; at most %d fit", n, vhdxMaxEntries)
	}
	for i := 0; i < n; i++ {
		e := table[16+32*i : 16+32*(i+1)]
		r := vhdxRegion{off: int64(le64(e[16:]) & (1<<62 - 1)), length: int64(le32(e[24:]))}
		if le64(e[16:]) > 1<<62 || r.off%vhdxMB != 0 || r.off < vhdxMB || !f.within(r.off, r.length) {
			return bat, meta, unsafef("vhdx region %d (%d bytes at offset %d) lies outside the %d-byte file or off a 1 MiB boundary; "+
				"the image is truncated or crafted: download it again or check the source", i, r.length, le64(e[16:]), f.size)
		}
		switch {
		case bytes.Equal(e[:16], vhdxBATGUID):
			bat = r
		case bytes.Equal(e[:16], vhdxMetadataGUID):
			meta = r
		case le32(e[28:])&1 != 0:
			return bat, meta, notSupportedf("this vhdx requires a region this package does not know")
		}
	}
	if bat.length == 0 || meta.length == 0 {
		return bat, meta, damaged("the vhdx region table lacks the block table or the metadata region")
	}
	return bat, meta, nil
}

type vhdxMeta struct {
	size, block, sector int64
	leaveAllocated      bool
}

// vhdxMetadata reads the items needed for the virtual size and block
// layout, and refuses a differencing disk (a parent locator, or the
// HasParent flag).
func vhdxMetadata(f *file, r vhdxRegion) (vhdxMeta, error) {
	var m vhdxMeta
	if r.length < vhdxMetaTableLen {
		return m, damaged("the vhdx metadata region (%d bytes) is smaller than its table", r.length)
	}
	t, err := f.readAt(r.off, vhdxMetaTableLen)
	if err != nil {
		return m, err
	}
	if !hasPrefix(t, "metadata") {
		return m, damaged("the vhdx metadata region has no metadata table")
	}
	n := int(le16(t[10:]))
	if n > vhdxMaxEntries {
		return m, damaged("the vhdx metadata table has %d entries; at most %d fit", n, vhdxMaxEntries)
	}
	item := func(e []byte, want int64) ([]byte, error) {
		off, length := int64(le32(e[16:])), int64(le32(e[20:]))
		if length < want || off < vhdxMetaTableLen || off > r.length || length > r.length-off {
			return nil, unsafef("a vhdx metadata item (%d bytes at %d) lies outside its %d-byte region; "+
				"the image is truncated or crafted: download it again or check the source", length, off, r.length)
		}
		return f.readAt(r.off+off, int(want))
	}
	for i := 0; i < n; i++ {
		e := t[32+32*i : 32+32*(i+1)]
		switch {
		case bytes.Equal(e[:16], vhdxParentLocator):
			return m, unsafef("this vhdx is a differencing disk (it has a parent locator): a hypervisor would read its parent " +
				"from the host; publish a self-contained image (qemu-img convert -O vhdx)")
		case bytes.Equal(e[:16], vhdxFileParams):
			b, err := item(e, 8)
			if err != nil {
				return m, err
			}
			m.block = int64(le32(b))
			m.leaveAllocated = le32(b[4:])&1 != 0
			if le32(b[4:])&vhdxHasParent != 0 {
				return m, unsafef("this vhdx is a differencing disk (its parameters say it has a parent): a hypervisor would " +
					"read its parent from the host; publish a self-contained image (qemu-img convert -O vhdx)")
			}
		case bytes.Equal(e[:16], vhdxVirtualSize):
			b, err := item(e, 8)
			if err != nil {
				return m, err
			}
			m.size = int64(min(le64(b), vhdxMaxSize+1))
		case bytes.Equal(e[:16], vhdxLogicalSector):
			b, err := item(e, 4)
			if err != nil {
				return m, err
			}
			m.sector = int64(le32(b))
		}
	}
	switch {
	case m.block < vhdxMB || m.block > 256*vhdxMB || m.block&(m.block-1) != 0:
		return m, damaged("the vhdx block size %d is not a power of two from 1 MiB to 256 MiB", m.block)
	case m.sector != 512 && m.sector != 4096:
		return m, damaged("the vhdx logical sector size %d is neither 512 nor 4096", m.sector)
	case m.size <= 0 || m.size > vhdxMaxSize || m.size%m.sector != 0:
		return m, damaged("the vhdx virtual size %d is not a positive multiple of its sector size up to 64 TiB", m.size)
	}
	return m, nil
}

// vhdxBAT checks that every present block the block allocation table names
// lies inside the file. Payload entries are interleaved with one sector
// bitmap entry per chunk.
func vhdxBAT(f *file, r vhdxRegion, m vhdxMeta) error {
	chunk := (int64(1) << 23) * m.sector / m.block
	payload := (m.size + m.block - 1) / m.block
	entries := payload + (payload-1)/chunk
	if entries*8 > r.length {
		return damaged("the vhdx block table (%d bytes) is too small for %d entries", r.length, entries)
	}
	return f.eachEntry(r.off, entries, 8, func(i int64, e []byte) error {
		v := le64(e)
		state, mb := v&7, int64(v>>20)
		length := m.block
		if (i+1)%(chunk+1) == 0 {
			length = vhdxMB // a sector bitmap block
		}
		if state != 6 && state != 7 {
			return nil
		}
		if !f.within(mb*vhdxMB, length) {
			return unsafef("entry %d of the vhdx block table points at offset %d, outside the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", i, mb*vhdxMB, f.size)
		}
		return nil
	})
}

// crcOK checks a CRC-32C stored at sum over b with the sum itself zeroed.
func crcOK(b []byte, sum int) bool {
	want := le32(b[sum:])
	c := crc32.Update(0, castagnoli, b[:sum])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[sum+4:])
	return c == want
}

// guid turns the text form of a GUID into its on-disk bytes (the first
// three groups little-endian).
func guid(s string) []byte {
	var raw []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			continue
		}
		raw = append(raw, unhex(s[i])<<4|unhex(s[i+1]))
		i++
	}
	return []byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6],
		raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]}
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
