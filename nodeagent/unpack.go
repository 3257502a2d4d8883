package nodeagent

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/decompress"
	"github.com/quantix/cloudimages/fault"
)

// unpackName is the work file a compressed download is decompressed into
// before it is published: {id}~{node}.unpack, next to the partial data
// (which stays until the decompressed file is published, so a restart
// decompresses it again instead of downloading it again).
func unpackName(id, node string) string { return workDir + "/" + unpackBase(id, node) }
func unpackBase(id, node string) string { return id + "~" + node + ".unpack" }

// removeUnpacked removes a job's decompression work file; missing is fine.
func (p *pool) removeUnpacked(id, node string) error {
	if err := p.root.Remove(unpackName(id, node)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// unpacked is the result of decompressing the verified partial file: the
// work file, its size and the sha256 of the bytes written to it.
type unpacked struct {
	f    *os.File
	size int64
	sum  string
}

// unpack stream-decompresses the verified partial file (kind as its magic
// bytes say) into the job's work file, hashing the bytes as they are
// written, and stops at --max-image-size or the pool's reserve: a small
// file that expands past either is a bomb and never fills the pool.
// publish syncs the work file to disk, as it does an uncompressed partial
// file. On error the caller removes the work file (end → removeJobFiles);
// t.out is closed by download.
func (t *transfer) unpack(ctx context.Context, kind string) (unpacked, error) {
	j := t.j
	id, node := t.req.ID, j.node()
	if err := j.pool.removeUnpacked(id, node); err != nil {
		return unpacked{}, diskError(j.pool, err)
	}
	out, err := j.pool.root.OpenFile(unpackName(id, node), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return unpacked{}, diskError(j.pool, err)
	}
	t.out = out
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := decompress.NewReader(dctx, kind, io.NewSectionReader(t.f, 0, t.done), decompress.Limit(t.s.cfg.MaxImageSize))
	if err != nil {
		return unpacked{}, fault.New(fault.Internal, "decompress %s: %v", t.req.FileName, err)
	}
	began := time.Now()
	j.log.Info("decompressing the verified download", "compression", kind, "decoder", r.Tool(), "bytes", t.done)
	h := sha256.New()
	size, err := t.copyOut(cancel, r, out, h)
	if err != nil {
		return unpacked{}, t.unpackError(ctx, kind, err)
	}
	j.log.Info("decompressed", "compression", kind, "decoder", r.Tool(), "bytes", size, "took", time.Since(began))
	return unpacked{f: out, size: size, sum: checksum.Of("sha256", h)}, nil
}

// copyOut copies the decompressed stream to out in one pass: one goroutine
// decompresses, this one hashes, checks the limits and writes, so the
// decoder (most often the slowest part) never waits for the hash or the
// disk. It closes r.
func (t *transfer) copyOut(cancel context.CancelFunc, r *decompress.Reader, out *os.File, h hash.Hash) (int64, error) {
	chunks := make(chan chunk, len(t.bufs))
	free := make(chan []byte, len(t.bufs))
	for _, b := range t.bufs {
		free <- b
	}
	go func() {
		defer close(chunks)
		defer r.Close() // Read and Close in the same goroutine, never at once
		for buf := range free {
			// Fill the buffer: decoders return small reads, and each
			// write checks the pool's free space.
			n, err := 0, error(nil)
			for n < len(buf) && err == nil {
				var m int
				m, err = r.Read(buf[n:])
				n += m
			}
			if n > 0 {
				chunks <- chunk{buf: buf[:n]}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				chunks <- chunk{err: err}
				return
			}
		}
	}()
	var size, flushed int64
	var err error
	for c := range chunks {
		switch {
		case err != nil:
		case c.err != nil:
			err = c.err
		default:
			h.Write(c.buf)
			if err = t.writeOut(out, c.buf); err != nil {
				cancel() // the decoder stops; its goroutine ends
				close(free)
				free = nil
			} else {
				size += int64(len(c.buf))
				if size-flushed >= writeBackBytes {
					_ = unix.SyncFileRange(int(out.Fd()), flushed, size-flushed, unix.SYNC_FILE_RANGE_WRITE)
					flushed = size
				}
			}
		}
		if free != nil && c.buf != nil {
			free <- c.buf[:cap(c.buf)]
		}
	}
	return size, err
}

// writeOut writes one chunk of decompressed bytes, once the pool's
// reserve allows it.
func (t *transfer) writeOut(out *os.File, buf []byte) error {
	p := t.j.pool
	if room, err := p.room(t.s.minFree); err == nil && int64(len(buf)) > room {
		return t.s.noRoom(p, room, int64(len(buf)))
	}
	if inject := t.s.writeFault; inject != nil {
		if err := inject(len(buf)); err != nil {
			return diskError(p, err)
		}
	}
	if _, err := out.Write(buf); err != nil {
		return diskError(p, err)
	}
	return nil
}

// unpackError maps what stopped a decompression to the contract's codes.
// The compressed bytes matched their checksum, so damaged data is the
// vendor's: downloading it again would bring the same bytes.
func (t *transfer) unpackError(ctx context.Context, kind string, err error) error {
	if _, ok := fault.As(err); ok {
		return err // the writer's: disk_full, internal
	}
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, decompress.ErrTooLarge):
		return fault.New(fault.TooLarge, "%s decompresses to more than the node's --max-image-size of %d bytes: %v", t.req.FileName, t.s.cfg.MaxImageSize, err)
	case errors.Is(err, decompress.ErrCorrupt):
		return fault.New(fault.NotADiskImage, "%s is %s-compressed and matched its checksum, but does not decompress: the vendor published a damaged file (%v). Report it to the vendor or use another build", t.req.FileName, kind, err)
	default:
		return fault.Retryable(fault.Internal, "decompress %s: %v", t.req.FileName, err)
	}
}

// fileSum is the sha256 of an uncompressed download, published as it was
// written: the verified hash itself for sha256 requests, the sha256 kept
// alongside it (see sha512With256) for sha512 ones.
func (t *transfer) fileSum(got string) string {
	if d, ok := t.h.(*sha512With256); ok {
		return checksum.Of("sha256", d.side)
	}
	return got
}

// sha512With256 is the hash of a sha512 request: sha512 for the check,
// and a sha256 of the same bytes, which file_checksum always is. It costs
// a second hash on the download's hot path, for sha512 requests only;
// reading the file again after the download would cost a second pass over
// the disk instead. Its state (both hashes) is saved and resumed as one.
type sha512With256 struct {
	hash.Hash           // sha512: Sum, Size and BlockSize are its
	side      hash.Hash // sha256
}

func newSHA512With256() *sha512With256 {
	return &sha512With256{Hash: checksum.NewHash("sha512"), side: sha256.New()}
}

func (d *sha512With256) Write(p []byte) (int, error) {
	d.side.Write(p)
	return d.Hash.Write(p)
}

func (d *sha512With256) Reset() {
	d.Hash.Reset()
	d.side.Reset()
}

// MarshalBinary is the sha512 state's length (4 bytes, big endian), that
// state, then the sha256 state.
func (d *sha512With256) MarshalBinary() ([]byte, error) {
	a, err := d.Hash.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	b, err := d.side.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(a))), append(a, b...)...), nil
}

func (d *sha512With256) UnmarshalBinary(state []byte) error {
	if len(state) < 4 || int64(binary.BigEndian.Uint32(state)) > int64(len(state)-4) {
		return errors.New("hash state: not a sha512+sha256 state")
	}
	n := 4 + int(binary.BigEndian.Uint32(state))
	if err := d.Hash.(encoding.BinaryUnmarshaler).UnmarshalBinary(state[4:n]); err != nil {
		return err
	}
	return d.side.(encoding.BinaryUnmarshaler).UnmarshalBinary(state[n:])
}
