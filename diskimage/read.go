package diskimage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// headLen is how much of the start of a file Inspect reads to recognise it:
// every format's first header fits, and vdi's and vmdk's reach furthest.
const headLen = 4096

// maxChunk bounds one read's buffer, so a table of any size is checked
// through a buffer of at most this many bytes.
const maxChunk = 64 << 10

// readSlack is how much more than the file's size Inspect may read in
// all: tables lie inside the file, so reading more than the file means a
// crafted header names the same tables over and over.
const readSlack = 16 << 20

// file is the image being inspected: every read is checked against size
// first, so a header cannot make Inspect read (or allocate for) bytes that
// are not there, and the total read is bounded by the size too.
type file struct {
	r    io.ReaderAt
	size int64
	read int64
}

// head reads up to n bytes from the start (fewer if the file is shorter).
func (f *file) head(n int) ([]byte, error) {
	if int64(n) > f.size {
		n = int(f.size)
	}
	return f.readAt(0, n)
}

// within reports whether [off, off+n) lies inside the file, without
// overflowing.
func (f *file) within(off, n int64) bool {
	return off >= 0 && n >= 0 && off <= f.size && n <= f.size-off
}

// readAt reads exactly n bytes at off; the range must be within the file
// and n at most maxChunk (callers check both first; this is the backstop).
func (f *file) readAt(off int64, n int) ([]byte, error) {
	if n < 0 || n > maxChunk || !f.within(off, int64(n)) {
		return nil, fmt.Errorf("diskimage: internal: read of %d bytes at %d outside a %d-byte file", n, off, f.size)
	}
	if f.read += int64(n); f.read > f.size+readSlack {
		return nil, damaged("its tables add up to more than the file's own %d bytes: they overlap or repeat", f.size)
	}
	b := make([]byte, n)
	got, err := f.r.ReadAt(b, off)
	if got == n {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("diskimage: reading %d bytes at offset %d: %w", n, off, err)
}

// eachEntry calls fn for each of count entries of width bytes in the table
// at off, reading the table in bounded chunks. The caller has checked that
// the table is inside the file.
func (f *file) eachEntry(off, count int64, width int, fn func(i int64, e []byte) error) error {
	per := int64(maxChunk / width)
	for i := int64(0); i < count; i += per {
		n := min(per, count-i)
		b, err := f.readAt(off+i*int64(width), int(n)*width)
		if err != nil {
			return err
		}
		for j := int64(0); j < n; j++ {
			if err := fn(i+j, b[int(j)*width:int(j+1)*width]); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	be16 = binary.BigEndian.Uint16
	be32 = binary.BigEndian.Uint32
	be64 = binary.BigEndian.Uint64
	le16 = binary.LittleEndian.Uint16
	le32 = binary.LittleEndian.Uint32
	le64 = binary.LittleEndian.Uint64
)

// mulFits returns a*b and whether it fits in an int64 (both non-negative).
func mulFits(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	if a != 0 && b > (1<<63-1)/a {
		return 0, false
	}
	return a * b, true
}
