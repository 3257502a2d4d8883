package nodeagent

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/diskimage"
)

// An image is hashed on its way in and, unless it is decompressed or
// converted, the agent does not read it again; left in the page cache,
// gigabytes of it would push out the pages a node's VMs need. So the
// agent drops an image's pages once they are on disk: at each checkpoint
// (right after its fdatasync, when they are clean and go at once) and
// after the final sync. The writes themselves still go through the page
// cache, so the disk works while the stream goes on; and the pages the
// stream frees are the ones its next writes get, still warm.
//
// Direct I/O (O_DIRECT) was tried first and measured: it cut the agent's
// CPU, but each write then waited for the disk, and uploads to READY were
// slower (go run ./bench -only upload, BENCHMARKS.md).

// dropCached drops f's pages in [0, upTo) from the page cache, to the end
// of the file when upTo is 0. Pages not yet on disk stay; it is advice,
// and a file system that ignores it loses nothing.
func dropCached(f *os.File, upTo int64) {
	_ = unix.Fadvise(int(f.Fd()), 0, upTo, unix.FADV_DONTNEED)
}

// readBack reports whether the partial file, whose head has been seen, is
// read back whole once it is in: decompressed or converted. Its pages
// then stay in the cache until that is done.
func (t *transfer) readBack() bool {
	return diskimage.DetectCompression(t.head) != diskimage.None || t.req.ConvertTo != ""
}
