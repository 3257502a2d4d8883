package diskimage

// A raw disk has no magic number; what marks one is a partition table: an
// MBR (0x55AA at byte 510) or a GPT ("EFI PART" in the second logical
// block, after 512 or 4096 bytes).
const (
	gptSignature  = "EFI PART"
	gptMaxEntries = 1 << 16
)

// inspectPartitioned recognises a raw disk by its partition table; ok is
// false when there is none.
func inspectPartitioned(f *file, head []byte) (Info, bool, error) {
	info := Info{Format: Raw, VirtualSize: f.size}
	for _, sector := range []int64{512, 4096} {
		if !f.within(sector, 512) {
			continue
		}
		h, err := f.readAt(sector, 92)
		if err != nil {
			return Info{}, true, err
		}
		if !hasPrefix(h, gptSignature) {
			continue
		}
		info.PartitionTable = "gpt"
		// The partition entries are what a bootloader reads first; they
		// must be in the file.
		lba, n, size := le64(h[72:]), int64(le32(h[80:])), int64(le32(h[84:]))
		if n > gptMaxEntries || size < 128 || size > 4096 || lba > 1<<40 || !f.within(int64(lba)*sector, n*size) {
			return Info{}, true, unsafef("the GPT's partition entries (%d of %d bytes at block %d) lie outside the %d-byte disk; "+
				"the image is truncated or crafted: download it again or check the source", n, size, lba, f.size)
		}
		return info, true, nil
	}
	if len(head) >= 512 && head[510] == 0x55 && head[511] == 0xaa {
		info.PartitionTable = "mbr"
		return info, true, nil
	}
	return Info{}, false, nil
}
