package diskimage

// ISO 9660: volume descriptors start at 32 KiB, each 2 KiB, with "CD001" at
// byte 1; the primary one (type 1) gives the volume's size.
const (
	isoDescriptors    = 0x8000
	isoDescLen        = 2048
	isoPrimary        = 1
	isoTerminator     = 255
	isoMaxDescriptors = 64
)

// inspectISO recognises an ISO 9660 image (hybrid ISOs, which also carry
// an MBR, included); ok is false when the bytes are not one.
func inspectISO(f *file) (Info, bool, error) {
	if !f.within(isoDescriptors, isoDescLen) {
		return Info{}, false, nil
	}
	d, err := f.readAt(isoDescriptors, isoDescLen)
	if err != nil {
		return Info{}, true, err
	}
	if string(d[1:6]) != "CD001" {
		return Info{}, false, nil
	}
	// Find the primary volume descriptor; the set ends with a terminator.
	for i := int64(0); i < isoMaxDescriptors; i++ {
		if i > 0 {
			off := isoDescriptors + i*isoDescLen
			if !f.within(off, isoDescLen) {
				break
			}
			if d, err = f.readAt(off, isoDescLen); err != nil {
				return Info{}, true, err
			}
			if string(d[1:6]) != "CD001" {
				break
			}
		}
		if d[0] == isoTerminator {
			break
		}
		if d[0] != isoPrimary {
			continue
		}
		blocks, blockLen := int64(le32(d[80:])), int64(le16(d[128:]))
		if blockLen != 512 && blockLen != 1024 && blockLen != 2048 {
			return Info{}, true, damaged("the iso's logical block size %d is not 512, 1024 or 2048", blockLen)
		}
		if blocks*blockLen > f.size {
			return Info{}, true, unsafef("the iso's volume is %d bytes but the file holds %d; "+
				"it is truncated: download it again", blocks*blockLen, f.size)
		}
		return Info{Format: ISO, VirtualSize: f.size}, true, nil
	}
	return Info{}, true, damaged("the iso has no primary volume descriptor")
}
