package nodeagent

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const (
	// bufSize and bufCount size the pipeline between the socket and the
	// disk: large reads and writes, three buffers in flight (1.5 MiB a job,
	// so eight downloads stay well inside 64 MiB of RSS).
	bufSize  = 512 << 10
	bufCount = 3
	// headSize is how much of the start of the data is looked at to tell a
	// disk image from an HTML page.
	headSize = 512
	// checkpointEvery bounds what a crash loses: the hash state is saved
	// next to the partial data at least this often, or every checkpointBytes.
	// What is past the last checkpoint is fetched again by the node that
	// takes over (issue 13: at most 2 % of a failed-over download). A
	// quarter of a second keeps that to 12.5 MiB at 50 MiB/s; a fast
	// download is checkpointed by its bytes anyway (64 MiB come in less
	// than 0.25 s above 256 MiB/s), so the extra syncs fall on slow ones,
	// whose disk has time to spare.
	checkpointEvery = 250 * time.Millisecond
	checkpointBytes = 64 << 20
	maxBackoff      = 30 * time.Second
	writeBackBytes  = 8 << 20
	// minProgress is what an attempt must bring to count as progress and
	// reset the count of failed attempts: a mirror that sends a few bytes
	// and stalls every time must not keep a download alive forever.
	minProgress = 1 << 20
)

// bufPool recycles the pipeline's buffers from one download to the next,
// so memory stays near what the running downloads hold.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// transfer is one job's download in progress: the partial file, the hash
// of its bytes, and what the mirror said about the file.
type transfer struct {
	s    *Server
	j    *job
	req  agentclient.DownloadRequest
	f    *os.File
	out  *os.File // the decompressed work file of a compressed download
	conv *os.File // the converted work file, when the pool wants another format
	algo string
	h    hash.Hash

	done         int64 // bytes in f, all of them hashed by h
	flushed      int64 // bytes handed to writeBack
	total        int64 // the file's size, -1 while unknown
	etag         string
	lastModified string
	complete     bool // the mirror said there is nothing left to send (416)
	qcow2        bool
	head         []byte
	headChecked  bool
	bufs         [][]byte
	ckpts        *checkpoints  // saves the stream's checkpoints while it runs (stream.go)
	m            *mirrors      // the URLs of the file and the one in use
	limit        *rate.Limiter // the request's own bandwidth cap (transport.go)
	// peer is the client of a peer copy's source, for peerURL (peer.go).
	peer    *http.Client
	peerURL string
}

// download runs a job to its end: fetch (with resumes and retries),
// verify, publish. It returns nil once the file is published.
func (s *Server) download(ctx context.Context, j *job) error {
	t, err := s.openTransfer(j)
	if err != nil {
		return err
	}
	defer func() {
		if t.peer != nil {
			t.peer.CloseIdleConnections()
		}
		if t.f != nil {
			t.f.Close()
		}
		if t.out != nil {
			t.out.Close()
		}
		if t.conv != nil {
			t.conv.Close()
		}
		for _, b := range t.bufs {
			bufPool.Put(&b)
		}
	}()
	if err := t.fetch(ctx); err != nil {
		if ctx.Err() != nil || keepsPartial(t.req, err) {
			t.checkpoint() // exact state: the next start resumes from here
		}
		return err
	}
	return t.publish(ctx)
}

// openTransfer opens the partial file: the one the record describes when
// it is intact (resume), a fresh one otherwise.
func (s *Server) openTransfer(j *job) (*transfer, error) {
	rec := j.record()
	t := &transfer{s: s, j: j, req: rec.Request, algo: "sha256", total: -1}
	if rec.Request.Checksum != "" {
		sum, err := checksum.Parse(rec.Request.Checksum)
		if err != nil {
			return nil, fault.New(fault.InvalidRequest, "%v", err)
		}
		t.algo = sum.Algo
	}
	t.h = checksum.NewHash(t.algo)
	if t.algo == "sha512" {
		t.h = newSHA512With256()
	}
	t.qcow2 = expectsQCOW2(rec.Request)
	t.m = newMirrors(rec.Request.URLs(), rec.Mirror)
	// A decompression that a restart cut short runs again, from the
	// verified partial data, into a fresh work file.
	if err := errors.Join(j.pool.removeUnpacked(rec.Request.ID, rec.NodeID), j.pool.removeConverted(rec.Request.ID, rec.NodeID)); err != nil {
		return nil, diskError(j.pool, err)
	}
	resumed := t.resume(rec)
	if rec.TakenFrom != "" {
		// Copied or not, the other node's partial data is no one's now.
		if err := j.pool.root.Remove(partName(rec.Request.ID, rec.TakenFrom)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			j.log.Warn("remove the partial data another node left", "from_node", rec.TakenFrom, "err", err)
		}
		if err := errors.Join(j.pool.removeUnpacked(rec.Request.ID, rec.TakenFrom), j.pool.removeConverted(rec.Request.ID, rec.TakenFrom)); err != nil {
			j.log.Warn("remove the work files another node left", "from_node", rec.TakenFrom, "err", err)
		}
	}
	if resumed {
		j.log.Info("resuming download", "bytes_done", t.done, "bytes_total", t.total)
	} else {
		j.setServed(nil)
		f, err := j.pool.createPart(rec.Request.ID, rec.NodeID)
		if err != nil {
			return nil, err
		}
		t.f = f
	}
	j.progress(t.done)
	t.bufs = make([][]byte, bufCount)
	for i := range t.bufs {
		t.bufs[i] = *bufPool.Get().(*[]byte)
	}
	return t, nil
}

// resume reopens the partial data of a record whose hash state is intact
// and whose file holds at least the bytes that state covers.
func (t *transfer) resume(rec record) bool {
	if rec.BytesDone <= 0 || rec.HashAlgo != t.algo || len(rec.HashState) == 0 {
		return false
	}
	if rec.TakenFrom != "" {
		return t.takeOver(rec)
	}
	root, name := t.j.pool.root, partName(rec.Request.ID, rec.NodeID)
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < rec.BytesDone {
		return false
	}
	if err := t.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(rec.HashState); err != nil {
		t.h.Reset()
		return false
	}
	f, err := root.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.h.Reset()
		return false
	}
	// Bytes past the checkpoint were written but never hashed: cut them.
	if err := f.Truncate(rec.BytesDone); err != nil {
		f.Close()
		t.h.Reset()
		return false
	}
	return t.resumeAt(f, rec)
}

// resumeAt sets the transfer to go on from the checkpoint in rec, with f
// holding exactly the bytes the hash covers.
func (t *transfer) resumeAt(f *os.File, rec record) bool {
	if _, err := f.Seek(rec.BytesDone, io.SeekStart); err != nil {
		f.Close()
		t.h.Reset()
		return false
	}
	t.f, t.done, t.flushed, t.total = f, rec.BytesDone, rec.BytesDone, rec.BytesTotal
	t.etag, t.lastModified = rec.ETag, rec.LastModified
	if rec.BytesTotal <= 0 {
		t.total = -1
	}
	t.head = make([]byte, min(rec.BytesDone, headSize))
	if _, err := f.ReadAt(t.head, 0); err != nil {
		f.Close()
		t.f = nil
		t.h.Reset()
		return false
	}
	t.headChecked = len(t.head) >= headSize
	return true
}

// takeOver makes the checkpointed prefix another node left this node's
// own: copied into this node's partial file and hashed from the bytes on
// disk, and kept only if that gives the hash state the other node
// recorded (its checkpoint may cover bytes that never reached the shared
// disk, or the file may have changed since). The other node's file is
// removed: were it only frozen, it now writes into a file nobody will
// publish, and its own publish finds nothing to rename.
func (t *transfer) takeOver(rec record) bool {
	began := time.Now()
	p, id := t.j.pool, rec.Request.ID
	from := partName(id, rec.TakenFrom)
	fi, err := p.root.Lstat(from)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < rec.BytesDone {
		return false
	}
	src, err := p.root.Open(from)
	if err != nil {
		return false
	}
	defer src.Close()
	f, err := p.createPart(id, rec.NodeID)
	if err != nil {
		return false
	}
	t.h.Reset()
	n, err := io.Copy(io.MultiWriter(f, t.h), io.NewSectionReader(src, 0, rec.BytesDone))
	if err == nil && n == rec.BytesDone {
		err = t.s.datasync(f)
	}
	state, merr := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil || n != rec.BytesDone || merr != nil || !bytes.Equal(state, rec.HashState) {
		t.j.log.Warn("the partial data another node left does not match its checkpoint; starting again from zero", "from_node", rec.TakenFrom, "bytes_done", rec.BytesDone, "err", err)
		f.Close()
		t.h.Reset()
		return false
	}
	t.j.log.Info("took over the partial data another node left: copied and re-hashed", "from_node", rec.TakenFrom, "bytes", rec.BytesDone, "took", time.Since(began))
	return t.resumeAt(f, rec)
}

// createPart creates a node's partial file for a download afresh.
func (p *pool) createPart(id, node string) (*os.File, error) {
	if err := p.root.Remove(partName(id, node)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fault.New(fault.Internal, "remove old partial data of %s: %v", id, err)
	}
	f, err := p.root.OpenFile(partName(id, node), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, diskError(p, err)
	}
	return f, nil
}

// fetch brings the partial file to the whole file, retrying with backoff
// while attempts fail in a way another attempt may get past.
func (t *transfer) fetch(ctx context.Context) error {
	cfg := t.s.cfg
	backoff := cfg.RetryBackoff
	failures := 0
	for {
		before := t.done
		err := t.attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var refusal *peerRefusal
		if errors.As(err, &refusal) {
			return err // the same peer and token would answer the same
		}
		fe := fault.From(err)
		if t.done-before >= minProgress {
			failures, backoff = 0, cfg.RetryBackoff
			t.m.progressed()
		}
		if mirrorFault(fe) {
			if t.m.failed(fe) {
				t.s.metrics.mirrorSwitches.Inc()
				t.checkpoint()
				t.j.log.Warn("mirror failed; trying the next one", "err", fe.Message, "bytes_done", t.done, "mirror", redact(t.m.url()))
				continue
			}
			fe = t.m.roundError()
		}
		if !fe.Retryable {
			return fe
		}
		failures++
		if failures >= cfg.MaxAttempts {
			return fault.Retryable(fe.Code, "%s (gave up after %d attempts in a row without progress; another node or a later try may get through)", fe.Message, failures)
		}
		t.checkpoint()
		t.j.log.Warn("download attempt failed; retrying", "err", fe.Message, "bytes_done", t.done, "retry_in", backoff, "failures", failures)
		select {
		case <-time.After(backoff):
		case <-t.j.sourceMoved:
			failures, backoff = 0, cfg.RetryBackoff // another peer: a fresh start
			continue
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// reset empties the partial file and the hash: start again from zero.
func (t *transfer) reset() error {
	if err := t.f.Truncate(0); err != nil {
		return diskError(t.j.pool, err)
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return diskError(t.j.pool, err)
	}
	t.h.Reset()
	t.done, t.flushed, t.total, t.etag, t.lastModified = 0, 0, -1, "", ""
	t.head, t.headChecked = nil, false
	t.j.progress(0)
	t.j.setServed(nil)
	return nil
}

// checkpoint saves the exact state: call it only when no stream runs.
func (t *transfer) checkpoint() {
	state, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return
	}
	_ = t.saveCheckpoint(state) // fenced: the next write or the publish stops
}

// saveCheckpoint records the hash state of the first t.done bytes once
// they are on disk (fdatasync): a crash must never leave a checkpoint that
// covers bytes the disk does not hold. When the sync fails, no checkpoint
// is saved; the download goes on and the next one tries again. It fails
// only when another node has taken the job over.
func (t *transfer) saveCheckpoint(state []byte) error { return t.saveCheckpointAt(t.at(state)) }

// checkpointAt is what a checkpoint records, taken when it falls due: it
// may be saved later, by the stream's checkpoint goroutine.
type checkpointAt struct {
	state              []byte
	done, total        int64
	etag, lastModified string
	served             []int64
	mirror             int
	// dropCache: the partial file will not be read back whole (it is
	// neither compressed nor to be converted), so the checkpoint drops its
	// pages from the page cache once synced (pagecache.go).
	dropCache bool
}

// at is the checkpoint of the transfer as it is now, with the hash state
// of its t.done bytes.
func (t *transfer) at(state []byte) checkpointAt {
	return checkpointAt{state: state, done: t.done, total: t.total, etag: t.etag, lastModified: t.lastModified,
		served: t.j.servedNow(), mirror: t.m.cur, dropCache: t.headChecked && !t.readBack()}
}

// saveCheckpointAt is saveCheckpoint of a checkpoint taken before: the
// sync covers at least its bytes, and later ones do no harm.
func (t *transfer) saveCheckpointAt(cp checkpointAt) error {
	if err := t.s.datasync(t.f); err != nil {
		t.j.log.Warn("partial data not synced to disk; checkpoint skipped", "err", err)
		return nil
	}
	if cp.dropCache {
		dropCached(t.f, cp.done)
	}
	t.j.update(func(r *record) {
		r.BytesDone, r.BytesTotal, r.HashAlgo, r.HashState = cp.done, cp.total, t.algo, cp.state
		r.ETag, r.LastModified = cp.etag, cp.lastModified
		r.MirrorBytes, r.Mirror = cp.served, cp.mirror
		r.TakenFrom = ""
	})
	if errors.Is(t.j.save(), errFenced) {
		return fenced(t.j)
	}
	return nil
}

// fdatasync flushes a file's data (not its times) to disk.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// diskError turns a file-system error into the contract's codes: a full
// disk (or quota) is disk_full, anything else internal; both retryable,
// since another node's disk may do.
func diskError(p *pool, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fault.Retryable(fault.DiskFull, "pool %s is full (%v): free space in %s or use another pool", p.id, err, p.dir)
	}
	return fault.Retryable(fault.Internal, "pool %s: %v", p.id, err)
}
