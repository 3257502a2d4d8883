package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dioAlign is the alignment direct I/O asks of a write's file offset,
// length and memory: 4 KiB covers the logical block size of the disks
// nodes use (512 or 4096 bytes) and the memory alignment they need.
const dioAlign = 4096

// Why direct I/O: an image is written once and not read again soon (its
// hash is taken on the way in), so going through the page cache only
// costs — a copy of every byte into newly allocated cache pages, the
// kernel's writeback of them, and a node's page cache, which its VMs'
// disks need, filled with gigabytes of image that push their data out.
// With O_DIRECT the disk reads the pipeline's own buffers; the fdatasync
// of a checkpoint still flushes the disk's cache, so what a checkpoint
// records is on disk as before. On `go run ./bench -only upload` this cut
// the agent's CPU per GiB (BENCHMARKS.md).
//
// A write goes direct only where its file offset, length and memory are
// aligned: the reader puts each chunk at the place in its buffer that
// matches its file offset (alignedStart), so after the first partial
// block of a resume the body of every chunk is aligned; the rest (the
// start of a resume at an odd offset, a chunk that a slow body cut short,
// the file's last bytes) is written through the page cache. Linux keeps
// the two coherent (a direct write flushes and drops cached pages in its
// range), and the ranges here never share a page anyway.
//
// Only local disk file systems (ext4, XFS, Btrfs) get direct I/O. On NFS,
// which shared pools often are, a direct write is a synchronous round
// trip to the server, where the page cache lets the client pipeline
// them; other file systems have their own ideas of O_DIRECT. A file
// system that refuses O_DIRECT all the same answers the fcntl or the
// first write with EINVAL: the transfer then writes through the page
// cache, as it always did, and says so once in its log.

// writeData writes b at t.done, which is the file's position: direct
// where it can, through the page cache where it cannot.
func (t *transfer) writeData(b []byte) (int, error) {
	if t.s.directIO && !t.fsChecked {
		t.fsChecked = true
		if kind, ok := localDiskFS(t.f); !ok {
			t.noDirect = true
			t.j.log.Debug("pool not on a local disk file system: writing through the page cache", "pool_id", t.j.pool.id, "fs_magic", kind)
		}
	}
	if !t.s.directIO || t.noDirect {
		if err := t.setDirect(false); err != nil {
			return 0, err
		}
		return t.f.Write(b)
	}
	head := min(len(b), int((dioAlign-t.done%dioAlign)%dioAlign))
	body := (len(b) - head) &^ (dioAlign - 1)
	if body > 0 && uintptr(unsafe.Pointer(&b[head]))%dioAlign != 0 {
		body = 0 // a buffer the reader did not align: through the page cache
	}
	n := 0
	for _, part := range []struct {
		b      []byte
		direct bool
	}{{b[:head], false}, {b[head : head+body], true}, {b[head+body:], false}} {
		if len(part.b) == 0 {
			continue
		}
		m, err := t.writePart(part.b, part.direct)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writePart writes b, direct or through the page cache. A direct write
// the file system refuses before writing anything is written again
// through the page cache, and the transfer stops trying direct I/O.
func (t *transfer) writePart(b []byte, direct bool) (int, error) {
	if err := t.setDirect(direct); err != nil {
		if !direct {
			return 0, err
		}
		t.directRefused(err)
		return t.writePart(b, false)
	}
	var n int
	var err error
	if inject := t.s.directFault; direct && inject != nil {
		err = inject()
	}
	if err == nil {
		n, err = t.f.Write(b)
	}
	if direct && n == 0 && errors.Is(err, unix.EINVAL) {
		t.directRefused(err)
		return t.writePart(b, false)
	}
	return n, err
}

// directRefused makes the transfer write through the page cache from now
// on, the file system having refused direct I/O.
func (t *transfer) directRefused(err error) {
	t.noDirect = true
	t.j.log.Info("the pool's file system refuses direct I/O; writing through the page cache", "pool_id", t.j.pool.id, "err", err)
}

// localDiskFS reports whether f is on ext4, XFS or Btrfs, with the file
// system's magic number.
func localDiskFS(f *os.File) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err.Error(), false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC:
		return "", true
	}
	return fmt.Sprintf("%#x", uint32(st.Type)), false
}

// setDirect turns O_DIRECT on or off for the partial file, if it is not
// so already.
func (t *transfer) setDirect(on bool) error {
	if t.direct == on {
		return nil
	}
	fd := int(t.f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags); err != nil {
		return err
	}
	t.direct = on
	return nil
}

// alignedStart is where in a buffer the reader puts the chunk that begins
// at file offset at, so that the chunk's bytes from the next aligned
// offset on sit at aligned memory (the buffers are aligned: see bufPool).
// (The reader does not look at noDirect, which the writer sets.)
func (t *transfer) alignedStart(at int64) int {
	if !t.s.directIO {
		return 0
	}
	return int(at % dioAlign)
}
