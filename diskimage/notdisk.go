package diskimage

import (
	"bytes"
	"fmt"
	"strconv"
)

// notDiskError is ErrNotDiskImage with the kind of thing the bytes are,
// when that is known ("" when they are simply unrecognised), so that
// InspectDeclared can accept unrecognised bytes as a declared raw disk but
// never an archive or a web page.
type notDiskError struct {
	kind string
	msg  string
}

func (e *notDiskError) Error() string { return ErrNotDiskImage.Error() + ": " + e.msg }
func (e *notDiskError) Unwrap() error { return ErrNotDiskImage }

// notSupportedf is ErrNotDiskImage for a recognised format in a variant
// this package does not support.
func notSupportedf(format string, args ...any) error {
	return &notDiskError{kind: "unsupported", msg: fmt.Sprintf(format, args...) + "; " + supported}
}

// notDiskImage names what the bytes are when they are something people
// publish or upload by mistake instead of a disk image.
func notDiskImage(head []byte, size int64) error {
	kind := identify(head)
	switch {
	case size == 0:
		return &notDiskError{kind: "empty", msg: "the file is empty; " + supported}
	case kind != "":
		return &notDiskError{kind: kind, msg: "this is " + kind + ", not a disk image; " + advice(kind) + supported}
	default:
		return &notDiskError{msg: "no disk image format recognised (and no MBR or GPT partition table for a raw disk); " +
			"if this is a raw disk without a partition table, declare its format as raw; " + supported}
	}
}

// identify recognises the usual mistakes by their magic bytes.
func identify(head []byte) string {
	switch {
	case hasPrefix(head, "PK\x03\x04") || hasPrefix(head, "PK\x05\x06"):
		return "a zip archive"
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "a tar archive"
	case hasPrefix(head, "7z\xbc\xaf\x27\x1c"):
		return "a 7-zip archive"
	case hasPrefix(head, "\x1f\x8b"):
		return "gzip-compressed data (perhaps a .tar.gz)"
	case DetectCompression(head) != None:
		return DetectCompression(head) + "-compressed data"
	case isHTML(head):
		return "an HTML page"
	}
	return ""
}

func advice(kind string) string {
	switch kind {
	case "a tar archive":
		return "extract the disk image first (an OVA is a tar archive: publish the vmdk inside it); "
	case "a zip archive", "a 7-zip archive", "gzip-compressed data (perhaps a .tar.gz)":
		return "extract the disk image from it and publish that; "
	case "an HTML page":
		return "the URL probably answers with a web page (a login or error page) instead of the file: check the URL; "
	}
	return "decompress it first; "
}

func isHTML(head []byte) bool {
	h := bytes.TrimLeft(head, " \t\r\n\ufeff")
	h = bytes.TrimPrefix(h, []byte("\xef\xbb\xbf"))
	h = bytes.ToLower(h[:min(len(h), 64)])
	return bytes.HasPrefix(h, []byte("<!doctype html")) || bytes.HasPrefix(h, []byte("<html")) ||
		bytes.HasPrefix(h, []byte("<head")) || bytes.HasPrefix(h, []byte("<?xml"))
}

func quote(s string) string { return strconv.Quote(s) }
func itoa(i int64) string   { return strconv.FormatInt(i, 10) }
