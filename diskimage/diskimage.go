// Package diskimage recognises a disk image by its bytes and refuses the ones
// that are unsafe to hand to a hypervisor: images that would read another
// file (a qcow2 backing file or external data file, vmdk extents, differencing
// vhd/vhdx/vdi) or whose tables point outside the file itself.
//
// Inspect reads only the headers and tables it needs, never the data, and
// bounds every read by the file's size and by the limits the formats
// themselves set, so it is fast on huge sparse images and safe on hostile
// ones. It is pure Go: no qemu-img is needed to inspect.
//
// Raw disks have no magic number. Inspect accepts bytes as raw only when they
// carry an MBR or GPT partition table; InspectDeclared also accepts other
// unrecognised bytes as raw when the source declared "raw" (a filesystem image
// without a partition table, say). Anything else is ErrNotDiskImage, naming
// what the bytes are when they are a kind people upload by mistake (zip, tar,
// a still compressed file, an HTML error page).
//
// Errors and the contract's codes: ErrUnsafe → unsafe_image, also for a
// header that is truncated or contradicts the file (a truncated image reads
// outside itself); ErrNotDiskImage → not_a_disk_image, also for a known
// format in a variant not supported (qcow2 v4, a vhdx with a log to
// replay); ErrFormatMismatch → format_mismatch. Any other error is a read
// error of the underlying file.
package diskimage

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// The formats Inspect recognises, as the contract spells them.
const (
	QCOW2 = "qcow2"
	Raw   = "raw"
	VMDK  = "vmdk"
	VHD   = "vhd"
	VHDX  = "vhdx"
	VDI   = "vdi"
	ISO   = "iso"
)

// Formats lists the supported formats in the order messages name them.
var Formats = []string{QCOW2, Raw, VMDK, VHD, VHDX, VDI, ISO}

// supported is the sentence every ErrNotDiskImage message ends with.
const supported = "supported disk images are qcow2, raw (with an MBR or GPT partition table, or declared raw), " +
	"vmdk (monolithic sparse or stream-optimized), vhd, vhdx, vdi and iso, each optionally compressed with xz, gzip, bzip2 or zstd"

// The errors callers branch on. Inspect wraps them with a message that says
// what was found and what to do; test with errors.Is.
var (
	// ErrUnsafe: the image would make a hypervisor read outside itself
	// (backing file, external data file, extents in other files, a
	// differencing disk, tables past the end of the file) or its header is
	// damaged so that it could. Maps to the contract's unsafe_image.
	ErrUnsafe = errors.New("unsafe disk image")
	// ErrNotDiskImage: the bytes are no disk image this package supports.
	// Maps to not_a_disk_image.
	ErrNotDiskImage = errors.New("not a disk image")
	// ErrFormatMismatch: the bytes are a different format than the source
	// declared. Maps to format_mismatch.
	ErrFormatMismatch = errors.New("format mismatch")
)

// Info is what Inspect found.
type Info struct {
	// Format is one of the constants above.
	Format string `json:"format"`
	// VirtualSize is the size of the disk a VM sees, in bytes. For raw and
	// iso it is the file's size.
	VirtualSize int64 `json:"virtual_size_bytes"`
	// Version is the format's header version where it has one (qcow2: 2 or
	// 3; vmdk: 1-3; vhdx: 1; vdi: 0x00010001), else 0.
	Version int `json:"version,omitempty"`
	// Subformat is the variant: vmdk "monolithicSparse" or
	// "streamOptimized", vhd "fixed" or "dynamic", vdi "dynamic" or
	// "fixed", vhdx "dynamic" or "fixed"; empty otherwise.
	Subformat string `json:"subformat,omitempty"`
	// ClusterSize is the allocation unit in bytes (qcow2 cluster, vmdk
	// grain, vhd/vhdx/vdi block), 0 where there is none.
	ClusterSize int64 `json:"cluster_size,omitempty"`
	// PartitionTable is "mbr", "gpt" or "" (raw, and the raw contents of a
	// fixed vhd are not looked at).
	PartitionTable string `json:"partition_table,omitempty"`
	// Encrypted is true for a qcow2 with encryption: its data cannot be
	// used without a key.
	Encrypted bool `json:"encrypted,omitempty"`
}

// Inspect recognises the disk image in the size bytes of r. It returns
// ErrUnsafe, ErrNotDiskImage or a read error, each wrapped with a message.
func Inspect(r io.ReaderAt, size int64) (Info, error) {
	if size < 0 {
		return Info{}, fmt.Errorf("diskimage: negative size %d", size)
	}
	f := &file{r: r, size: size}
	head, err := f.head(headLen)
	if err != nil {
		return Info{}, err
	}
	switch {
	case hasPrefix(head, qcow2Magic):
		return inspectQCOW2(f, head)
	case hasPrefix(head, vmdkMagic):
		return inspectVMDK(f, head)
	case isVMDKDescriptor(head):
		return Info{}, unsafef("this is a VMDK descriptor file, which names its data in other files (%s); "+
			"publish a single-file image instead (qemu-img convert -O vmdk -o subformat=streamOptimized, or -O qcow2)",
			describeExtents(head))
	case hasPrefix(head, vhdxMagic):
		return inspectVHDX(f)
	case len(head) >= vdiSigOff+4 && le32(head[vdiSigOff:]) == vdiSignature:
		return inspectVDI(f, head)
	}
	if info, ok, err := inspectVHD(f, head); ok || err != nil {
		return info, err
	}
	if info, ok, err := inspectISO(f); ok || err != nil {
		return info, err
	}
	if info, ok, err := inspectPartitioned(f, head); ok || err != nil {
		return info, err
	}
	return Info{}, notDiskImage(head, size)
}

// InspectDeclared is Inspect for a source that declared a format ("" when it
// declared none): bytes Inspect does not recognise are accepted as raw when
// declared is "raw" (unless they are a kind that is surely no disk, such as
// an archive), and the result must match what was declared (CheckDeclared).
func InspectDeclared(r io.ReaderAt, size int64, declared string) (Info, error) {
	info, err := Inspect(r, size)
	if errors.Is(err, ErrNotDiskImage) && normalize(declared) == Raw {
		var nd *notDiskError
		if errors.As(err, &nd) && nd.kind == "" && size > 0 {
			info, err = Info{Format: Raw, VirtualSize: size}, nil
		}
	}
	if err != nil {
		return info, err
	}
	return info, CheckDeclared(info, declared)
}

// CheckDeclared returns an error wrapping ErrFormatMismatch when info is not
// the format declared; an empty declaration matches anything. "vpc" is
// accepted for vhd and "img" for raw, the names qemu and vendors use.
func CheckDeclared(info Info, declared string) error {
	d := normalize(declared)
	if d == "" || d == info.Format {
		return nil
	}
	if !isFormat(d) {
		return fmt.Errorf("%w: the source declares format %q, which is not one of %s; "+
			"fix the declared format or leave it out to accept what the bytes are",
			ErrFormatMismatch, declared, strings.Join(Formats, ", "))
	}
	return fmt.Errorf("%w: the source declares %s but the bytes are a %s image; "+
		"fix the declared format (or the URL, if it points at the wrong file)", ErrFormatMismatch, d, info.Format)
}

func normalize(declared string) string {
	d := strings.ToLower(strings.TrimSpace(declared))
	switch d {
	case "vpc":
		return VHD
	case "img":
		return Raw
	}
	return d
}

func isFormat(s string) bool {
	for _, f := range Formats {
		if f == s {
			return true
		}
	}
	return false
}

// unsafef wraps ErrUnsafe with a message.
func unsafef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsafe}, args...)...)
}

// damaged is the ErrUnsafe for a header that contradicts itself or the file:
// qemu would refuse it or read past the end of the file.
func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s; the image is damaged, truncated or crafted: download it again or check the source",
		ErrUnsafe, fmt.Sprintf(format, args...))
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
