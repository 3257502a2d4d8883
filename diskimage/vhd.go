package diskimage

// VHD (qemu's "vpc"), as in Microsoft's "Virtual Hard Disk Image Format
// Specification". A 512-byte footer ends the file (dynamic disks also keep
// a copy at the start); fields are big-endian.
const (
	vhdCookie       = "conectix"
	vhdSparseCookie = "cxsparse"
	vhdFooterLen    = 512
	vhdDynHeaderLen = 1024
	vhdFixed        = 2
	vhdDynamic      = 3
	vhdDifferencing = 4
	vhdNoOffset     = 0xffffffffffffffff
)

// inspectVHD recognises a vhd by its footer; ok is false when the bytes are
// not a vhd.
func inspectVHD(f *file, head []byte) (Info, bool, error) {
	var footer []byte
	if f.size >= vhdFooterLen {
		b, err := f.readAt(f.size-vhdFooterLen, vhdFooterLen)
		if err != nil {
			return Info{}, true, err
		}
		if hasPrefix(b, vhdCookie) {
			footer = b
		}
	}
	if footer == nil {
		if hasPrefix(head, vhdCookie) {
			return Info{}, true, damaged("the vhd has its header copy at the start but no footer at the end: it is truncated")
		}
		return Info{}, false, nil
	}
	typ := be32(footer[60:])
	current := be64(footer[48:])
	if current > 1<<62 {
		return Info{}, true, damaged("the vhd virtual size %d is too large", current)
	}
	info := Info{Format: VHD, VirtualSize: int64(current)}
	switch typ {
	case vhdDifferencing:
		return Info{}, true, unsafef("this vhd is a differencing disk: a hypervisor would read its parent from the host; " +
			"publish a self-contained image (qemu-img convert -O vpc)")
	case vhdFixed:
		info.Subformat = "fixed"
		if int64(current) > f.size-vhdFooterLen {
			return Info{}, true, unsafef("the fixed vhd declares %d bytes but holds %d before its footer; "+
				"the image is truncated or crafted: download it again or check the source", current, f.size-vhdFooterLen)
		}
		return info, true, nil
	case vhdDynamic:
		info.Subformat = "dynamic"
	default:
		return Info{}, true, notSupportedf("this vhd has disk type %d; fixed (2) and dynamic (3) are supported", typ)
	}

	off := be64(footer[16:])
	if off == vhdNoOffset || off > 1<<62 || !f.within(int64(off), vhdDynHeaderLen) {
		return Info{}, true, unsafef("the dynamic vhd's header (at offset %d) lies outside the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", off, f.size)
	}
	dyn, err := f.readAt(int64(off), vhdDynHeaderLen)
	if err != nil {
		return Info{}, true, err
	}
	if !hasPrefix(dyn, vhdSparseCookie) {
		return Info{}, true, damaged("the dynamic vhd's header at offset %d has no %q cookie", off, vhdSparseCookie)
	}
	block := int64(be32(dyn[32:]))
	if block < 512 || block&(block-1) != 0 || block > 1<<30 {
		return Info{}, true, damaged("the vhd block size %d is not a power of two up to 1 GiB", block)
	}
	info.ClusterSize = block
	entries := int64(be32(dyn[28:]))
	if entries*block < int64(current) {
		return Info{}, true, damaged("the vhd block table has %d entries, too few for %d bytes", entries, current)
	}
	bat := be64(dyn[16:])
	if bat > 1<<62 || !f.within(int64(bat), entries*4) {
		return Info{}, true, unsafef("the vhd block table (%d entries at offset %d) points past the end of the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", entries, bat, f.size)
	}
	// Each allocated block is a sector bitmap followed by the block.
	bitmap := (block/512/8 + 511) &^ 511
	err = f.eachEntry(int64(bat), entries, 4, func(i int64, e []byte) error {
		sector := be32(e)
		if sector == 0xffffffff {
			return nil
		}
		if !f.within(int64(sector)*512, bitmap+block) {
			return unsafef("block %d of the vhd lies at sector %d, outside the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", i, sector, f.size)
		}
		return nil
	})
	return info, true, err
}
