package diskimage

import (
	"bytes"
	"strings"
)

// Compression names, as the contract spells them.
const (
	None  = "none"
	XZ    = "xz"
	Gzip  = "gzip"
	Bzip2 = "bzip2"
	Zstd  = "zstd"
)

// DetectCompression names the compressor of a stream by its first bytes
// (its magic number, not its name): "xz", "gzip", "bzip2", "zstd" or "none".
// Six bytes are enough.
func DetectCompression(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return XZ
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case len(head) >= 4 && string(head[:3]) == "BZh" && head[3] >= '1' && head[3] <= '9':
		return Bzip2
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	}
	return None
}

// compressionExts are the suffixes StripCompressionExt removes, and the
// compression each names.
var compressionExts = []string{".xz", ".gz", ".bz2", ".zst"}

var compressionOfExt = map[string]string{".xz": XZ, ".gz": Gzip, ".bz2": Bzip2, ".zst": Zstd}

// CompressionOfName names the compression a file name's suffix announces
// ("xz", "gzip", "bzip2", "zstd"), or "" when it ends in none of
// compressionExts. It is a label for people; a download is judged by its
// magic bytes (DetectCompression), never by its name.
func CompressionOfName(name string) string {
	lower := strings.ToLower(name)
	for _, ext := range compressionExts {
		if strings.HasSuffix(lower, ext) && len(name) > len(ext) {
			return compressionOfExt[ext]
		}
	}
	return ""
}

// StripCompressionExt removes one compression suffix (.xz, .gz, .bz2, .zst,
// in any case) from a file name: "f.qcow2.xz" becomes "f.qcow2".
func StripCompressionExt(name string) string {
	lower := strings.ToLower(name)
	for _, ext := range compressionExts {
		if strings.HasSuffix(lower, ext) && len(name) > len(ext) {
			return name[:len(name)-len(ext)]
		}
	}
	return name
}

// Ext is the file extension a published image of format carries (".qcow2",
// ".raw", ".vmdk", ".vhd", ".vhdx", ".vdi", ".iso"), or "" for a format
// that is not one of Formats.
func Ext(format string) string {
	if f := normalize(format); isFormat(f) {
		return "." + f
	}
	return ""
}
