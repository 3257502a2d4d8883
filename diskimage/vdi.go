package diskimage

// VDI, VirtualBox's format, as qemu's block/vdi.c reads it. Fields are
// little-endian.
const (
	vdiSigOff      = 0x40
	vdiSignature   = 0xbeda107f
	vdiHeaderLen   = 0x200
	vdiDynamic     = 1
	vdiStatic      = 2
	vdiUndo        = 3
	vdiDiff        = 4
	vdiUnallocated = 0xffffffff
	vdiDiscarded   = 0xfffffffe
	vdiMaxBlocks   = 0x3fffffff // qemu's VDI_BLOCKS_IN_IMAGE_MAX
)

func inspectVDI(f *file, head []byte) (Info, error) {
	if len(head) < vdiHeaderLen {
		return Info{}, damaged("the vdi header is truncated (%d bytes)", len(head))
	}
	version := le32(head[0x44:])
	if version>>16 != 1 {
		return Info{}, notSupportedf("this is a vdi of version %d.%d; version 1.x is supported", version>>16, version&0xffff)
	}
	info := Info{Format: VDI, Version: int(version)}
	switch typ := le32(head[0x4c:]); typ {
	case vdiDynamic:
		info.Subformat = "dynamic"
	case vdiStatic:
		info.Subformat = "fixed"
	case vdiUndo, vdiDiff:
		return Info{}, unsafef("this vdi is a differencing disk (image type %d): a hypervisor would read its parent "+
			"from the host; publish a self-contained image (qemu-img convert -O vdi)", typ)
	default:
		return Info{}, notSupportedf("this vdi has image type %d; dynamic (1) and fixed (2) are supported", typ)
	}
	bmap, data := int64(le32(head[0x154:])), int64(le32(head[0x158:]))
	disk := le64(head[0x170:])
	block := int64(le32(head[0x178:]))
	blocks := int64(le32(head[0x180:]))
	if block < 512 || block&(block-1) != 0 || block > 256<<20 {
		return Info{}, damaged("the vdi block size %d is not a power of two", block)
	}
	if blocks > vdiMaxBlocks || disk > 1<<62 || int64(disk) > blocks*block {
		return Info{}, damaged("the vdi's %d blocks of %d bytes do not cover its %d-byte disk", blocks, block, disk)
	}
	info.VirtualSize, info.ClusterSize = int64(disk), block
	if bmap < vdiHeaderLen || data < bmap+blocks*4 || !f.within(bmap, blocks*4) {
		return Info{}, unsafef("the vdi block map (%d entries at offset %d, data at %d) lies outside the %d-byte file; "+
			"the image is truncated or crafted: download it again or check the source", blocks, bmap, data, f.size)
	}
	return info, f.eachEntry(bmap, blocks, 4, func(i int64, e []byte) error {
		n := le32(e)
		if n == vdiUnallocated || n == vdiDiscarded {
			return nil
		}
		if int64(n) >= blocks || !f.within(data+int64(n)*block, block) {
			return unsafef("block %d of the vdi maps to block %d, outside the %d-byte file; "+
				"the image is truncated or crafted: download it again or check the source", i, n, f.size)
		}
		return nil
	})
}
