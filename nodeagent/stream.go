package nodeagent

import (
	"context"
	"encoding"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/fault"
)

// chunk is a buffer read from the mirror, already hashed; before is the
// hash state without it, state the hash state after it when a checkpoint
// is due.
type chunk struct {
	buf    []byte
	err    error
	before []byte
	state  []byte
}

// stream copies the body to the partial file in one pass: one goroutine
// reads and hashes, this one writes, so the network, the hash and the disk
// work at the same time. When it returns, t.h covers exactly t.done bytes.
func (t *transfer) stream(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, stall *time.Timer) error {
	readErr, err := t.pump(ctx, cancel, body, stall)
	switch {
	case err != nil:
		return err
	case readErr != io.EOF:
		return readError(ctx, readErr, t.done)
	case t.total >= 0 && t.done < t.total:
		return fault.Retryable(fault.UpstreamError, "mirror ended the body after %d of %d bytes", t.done, t.total)
	case t.total < 0 && t.req.SizeBytes > 0 && t.done < t.req.SizeBytes:
		return fault.Retryable(fault.UpstreamError, "mirror ended the body after %d of %d bytes (size_bytes)", t.done, t.req.SizeBytes)
	}
	t.total = t.done
	return t.checkHead()
}

// pump is stream's pipeline, shared with uploads: it copies body to the
// partial file until the body ends (readErr, io.EOF when it ended well) or
// a write fails (err, after the chunk was taken back). Either way t.h then
// covers exactly t.done bytes.
func (t *transfer) pump(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, stall *time.Timer) (readErr, err error) {
	chunks := make(chan chunk, len(t.bufs))
	free := make(chan []byte, len(t.bufs))
	for _, b := range t.bufs {
		free <- b
	}
	go t.read(ctx, body, free, chunks, stall)
	t.ckpts = t.startCheckpoints()
	var writeErr error
	var unhashed []byte // the hash state before the chunk whose write failed
	for c := range chunks {
		if c.err != nil {
			readErr = c.err
			continue
		}
		if writeErr == nil {
			if writeErr = t.write(c); writeErr != nil {
				cancel(writeErr)
				unhashed = c.before
			}
		}
		free <- c.buf[:cap(c.buf)]
	}
	// No checkpoint is saved after this: the record then holds the last
	// one, and what the caller saves next comes after it.
	ckptErr := t.ckpts.stop()
	t.ckpts = nil
	if writeErr != nil {
		return readErr, t.unwrite(unhashed, writeErr)
	}
	return readErr, ckptErr
}

// read is the reading half of stream.
func (t *transfer) read(ctx context.Context, body io.Reader, free chan []byte, chunks chan<- chunk, stall *time.Timer) {
	defer close(chunks)
	hashed := t.done
	lastState, lastAt := hashed, time.Now()
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			chunks <- chunk{err: context.Cause(ctx)}
			return
		}
		n, err := t.fill(ctx, body, buf, stall)
		if n > 0 {
			stall.Reset(t.s.cfg.StallTimeout)
			c := chunk{buf: buf[:n]}
			c.before, _ = t.h.(encoding.BinaryMarshaler).MarshalBinary()
			t.h.Write(buf[:n])
			hashed += int64(n)
			if hashed-lastState >= checkpointBytes || time.Since(lastAt) >= checkpointEvery {
				c.state, _ = t.h.(encoding.BinaryMarshaler).MarshalBinary()
				lastState, lastAt = hashed, time.Now()
			}
			chunks <- c
		} else if err == nil {
			free <- buf
		}
		if err != nil {
			chunks <- chunk{err: err}
			return
		}
	}
}

// write is the writing half of stream: one chunk to disk, then progress,
// the image check once the head is in, and a checkpoint when due.
func (t *transfer) write(c chunk) error {
	if t.ckpts != nil {
		if err := t.ckpts.failed(); err != nil {
			return err // fenced: another node took the job over
		}
	}
	if err := t.checkLimits(int64(len(c.buf))); err != nil {
		return err
	}
	if inject := t.s.writeFault; inject != nil {
		if err := inject(len(c.buf)); err != nil {
			return diskError(t.j.pool, err)
		}
	}
	n, err := t.f.Write(c.buf)
	if err != nil {
		return diskError(t.j.pool, err)
	}
	t.done += int64(n)
	t.j.addServed(t.m.cur, int64(n))
	t.writeBack()
	t.s.metrics.bytes.Add(float64(n))
	if t.req.Peer != nil {
		t.s.metrics.peerBytes.Add(float64(n))
	}
	t.j.progress(t.done)
	if !t.headChecked {
		t.head = append(t.head, c.buf[:min(len(c.buf), headSize-len(t.head))]...)
		if len(t.head) >= headSize {
			if err := t.checkHead(); err != nil {
				// Count the chunk out again, so that unwrite cuts it off
				// with its hash: file and hash then agree, whatever
				// saves a checkpoint next.
				t.done -= int64(n)
				t.j.addServed(t.m.cur, -int64(n))
				return err
			}
		}
	}
	if c.state != nil {
		if t.ckpts != nil {
			t.ckpts.hand(t.at(c.state))
			return nil
		}
		return t.saveCheckpoint(c.state)
	}
	return nil
}

// checkpoints saves a stream's checkpoints in a goroutine of its own, one
// at a time: each waits for the disk (fdatasync), and the stream goes on
// writing meanwhile instead of stopping for it (which cost a third of an
// upload's throughput: go test -bench Upload ./nodeagent/). A checkpoint
// that falls due while one is being saved replaces the one waiting, if
// any: the record is as recent as the disk allows.
type checkpoints struct {
	next chan checkpointAt
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (t *transfer) startCheckpoints() *checkpoints {
	c := &checkpoints{next: make(chan checkpointAt, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for cp := range c.next {
			if err := t.saveCheckpointAt(cp); err != nil {
				c.mu.Lock()
				if c.err == nil {
					c.err = err
				}
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// hand gives the goroutine a checkpoint to save; only the stream's writer
// calls it.
func (c *checkpoints) hand(cp checkpointAt) {
	select {
	case c.next <- cp:
	default:
		select {
		case <-c.next: // an older one still waits: this one replaces it
		default:
		}
		c.next <- cp
	}
}

// failed is the error of a checkpoint saved so far, if any.
func (c *checkpoints) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// stop waits until the checkpoints handed over are saved.
func (c *checkpoints) stop() error {
	close(c.next)
	<-c.done
	return c.failed()
}

// checkLimits stops a body before a chunk of n bytes would take the file
// past what the mirror announced (Content-Length), the request's exact
// size_bytes, the node's --max-image-size, or the pool's free-space
// reserve (--min-free): a chunked or endless body never fills the pool.
func (t *transfer) checkLimits(n int64) error {
	end := t.done + n
	switch {
	case t.total >= 0 && end > t.total:
		return fault.Retryable(fault.UpstreamError, "mirror sent more than the %d bytes it announced", t.total)
	case t.req.SizeBytes > 0 && end > t.req.SizeBytes && t.j.isUpload():
		return fault.New(fault.TooLarge, "the upload sent more than the %d bytes it declared (Upload-Length): upload the file again with its real size", t.req.SizeBytes)
	case t.req.SizeBytes > 0 && end > t.req.SizeBytes:
		return fault.New(fault.TooLarge, "mirror sent more than the image's %d bytes (size_bytes): the file there is not this image, or size_bytes is wrong", t.req.SizeBytes)
	case end > t.s.cfg.MaxImageSize:
		return tooLarge(end, t.s.cfg.MaxImageSize)
	}
	room, err := t.j.pool.room(t.s.minFree)
	if err == nil && n > room {
		return t.s.noRoom(t.j.pool, room, n)
	}
	return nil
}

// unwrite takes back a chunk whose write failed, once the reader has
// stopped: the file is cut to t.done and the hash set back to before the
// chunk (the reader hashed it, and the chunks after it, which are
// dropped). Then both cover t.done bytes again and a retry resumes
// correctly instead of ending in a checksum mismatch. If the file cannot
// be cut, no retry is safe.
func (t *transfer) unwrite(before []byte, err error) error {
	if uerr := t.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(before); uerr != nil {
		return fault.New(fault.Internal, "%v; and the hash cannot be set back: %v", err, uerr)
	}
	if terr := t.f.Truncate(t.done); terr != nil {
		return fault.New(fault.Internal, "%v; and the partial file cannot be cut back: %v", err, terr)
	}
	if _, serr := t.f.Seek(t.done, io.SeekStart); serr != nil {
		return fault.New(fault.Internal, "%v; and the partial file cannot be cut back: %v", err, serr)
	}
	return err
}

// writeBack starts the kernel writing the last writeBackBytes to disk
// while the download goes on, so the fsync before publishing has little
// left to do and dirty pages do not pile up in memory.
func (t *transfer) writeBack() {
	if t.done-t.flushed < writeBackBytes {
		return
	}
	_ = unix.SyncFileRange(int(t.f.Fd()), t.flushed, t.done-t.flushed, unix.SYNC_FILE_RANGE_WRITE)
	t.flushed = t.done
}
