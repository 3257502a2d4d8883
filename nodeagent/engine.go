package nodeagent

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/fault"
)

const (
	// bufSize and bufCount size the pipeline between the socket and the
	// disk: large reads and writes, three buffers in flight (3 MiB a job).
	bufSize  = 1 << 20
	bufCount = 3
	// headSize is how much of the start of the data is looked at to tell a
	// disk image from an HTML page.
	headSize = 512
	// checkpointEvery bounds what a crash loses: the hash state is saved
	// next to the partial data at least this often, or every checkpointBytes.
	checkpointEvery = time.Second
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
	req  DownloadRequest
	f    *os.File
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
}

// download runs a job to its end: fetch (with resumes and retries),
// verify, publish. It returns nil once the file is published.
func (s *Server) download(ctx context.Context, j *job) error {
	t, err := s.openTransfer(j)
	if err != nil {
		return err
	}
	defer func() {
		if t.f != nil {
			t.f.Close()
		}
		for _, b := range t.bufs {
			bufPool.Put(&b)
		}
	}()
	if err := t.fetch(ctx); err != nil {
		if ctx.Err() != nil {
			t.checkpoint() // exact state: the next start resumes from here
		}
		return err
	}
	return t.publish()
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
	t.qcow2 = expectsQCOW2(rec.Request)
	if t.resume(rec) {
		j.log.Info("resuming download", "bytes_done", t.done, "bytes_total", t.total)
	} else {
		root := j.pool.root
		if err := root.Remove(partName(rec.Request.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fault.New(fault.Internal, "remove old partial data of %s: %v", rec.Request.ID, err)
		}
		f, err := root.OpenFile(partName(rec.Request.ID), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, diskError(j.pool, err)
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
	root, name := t.j.pool.root, partName(rec.Request.ID)
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
		fe := fault.From(err)
		if !fe.Retryable {
			return fe
		}
		if t.done-before >= minProgress {
			failures, backoff = 0, cfg.RetryBackoff
		}
		failures++
		if failures >= cfg.MaxAttempts {
			return fault.Retryable(fe.Code, "%s (gave up after %d attempts in a row without progress; another node or a later try may get through)", fe.Message, failures)
		}
		t.checkpoint()
		t.j.log.Warn("download attempt failed; retrying", "err", fe.Message, "bytes_done", t.done, "retry_in", backoff, "failures", failures)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt is one HTTP request to the mirror, from t.done on.
func (t *transfer) attempt(ctx context.Context) error {
	if t.total >= 0 && t.done == t.total && t.done > 0 {
		return nil // all there; a restart found the whole file on disk
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(t.s.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, t.req.URL, nil)
	if err != nil {
		return fault.New(fault.InvalidRequest, "url %q: %v", t.req.URL, err)
	}
	req.Header.Set("User-Agent", "cloudimages-nodeagent/"+t.s.cfg.Version)
	req.Header.Set("Accept-Encoding", "identity")
	if t.done > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(t.done, 10)+"-")
		if t.etag != "" {
			req.Header.Set("If-Range", t.etag)
		} else if t.lastModified != "" {
			req.Header.Set("If-Range", t.lastModified)
		}
	}
	resp, err := t.s.upstream.Do(req)
	if err != nil {
		return requestError(actx, err, req)
	}
	defer resp.Body.Close()
	if err := t.accept(resp); err != nil || t.complete {
		return err
	}
	return t.stream(actx, cancel, resp.Body, stall)
}

// accept looks at the mirror's answer before any byte is written: status,
// range, validators, size and free space.
func (t *transfer) accept(resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusOK:
		if t.done > 0 {
			t.j.log.Info("mirror sent the whole file instead of the rest (no Range support, or the file changed): restarting from zero", "bytes_done", t.done)
			if err := t.reset(); err != nil {
				return err
			}
		}
		t.total = resp.ContentLength
		t.etag, t.lastModified = strongETag(resp.Header.Get("ETag")), resp.Header.Get("Last-Modified")
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if et := strongETag(resp.Header.Get("ETag")); !ok || start != t.done || (t.etag != "" && et != "" && et != t.etag) {
			if err := t.reset(); err != nil {
				return err
			}
			return fault.Retryable(fault.UpstreamError, "mirror sent a range that does not continue the partial data (Content-Range %q, ETag %q): restarting from zero", resp.Header.Get("Content-Range"), resp.Header.Get("ETag"))
		}
		t.total = total
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == t.done {
			t.total, t.complete = total, true
			return nil
		}
		if err := t.reset(); err != nil {
			return err
		}
		return fault.Retryable(fault.UpstreamError, "mirror refused the range from byte %d: restarting from zero", t.done)
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusUnauthorized:
		return fault.New(fault.UpstreamNotFound, "mirror answered %s for %s: check the URL (the image may have been moved or removed)", resp.Status, redact(t.req.URL))
	default:
		return fault.Retryable(fault.UpstreamError, "mirror answered %s for %s", resp.Status, redact(t.req.URL))
	}
	if t.req.SizeBytes > 0 && t.total >= 0 && t.total != t.req.SizeBytes {
		return fault.New(fault.NotADiskImage, "mirror serves %d bytes, the image is %d bytes (size_bytes): the file there is truncated or not this image", t.total, t.req.SizeBytes)
	}
	return t.checkSpace()
}

// checkSpace refuses, before writing, a file larger than the pool's room.
func (t *transfer) checkSpace() error {
	size := t.total
	if size < 0 {
		size = t.req.SizeBytes
	}
	if size <= 0 {
		return nil
	}
	free, _, err := t.j.pool.space()
	if err != nil {
		return nil // the write will tell
	}
	if need := size - t.done; need > 0 && uint64(need) > free {
		return fault.Retryable(fault.DiskFull, "pool %s has %d bytes free, the image needs %d more: free space in %s or use another pool", t.j.pool.id, free, need, t.j.pool.dir)
	}
	return nil
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
	return nil
}

// chunk is a buffer read from the mirror, already hashed; state is the
// hash state after it, when a checkpoint is due.
type chunk struct {
	buf   []byte
	err   error
	state []byte
}

// stream copies the body to the partial file in one pass: one goroutine
// reads and hashes, this one writes, so the network, the hash and the disk
// work at the same time. When it returns, t.h covers exactly t.done bytes.
func (t *transfer) stream(ctx context.Context, cancel context.CancelCauseFunc, body io.Reader, stall *time.Timer) error {
	chunks := make(chan chunk, len(t.bufs))
	free := make(chan []byte, len(t.bufs))
	for _, b := range t.bufs {
		free <- b
	}
	go t.read(ctx, body, free, chunks, stall)
	var readErr, writeErr error
	for c := range chunks {
		if c.err != nil {
			readErr = c.err
			continue
		}
		if writeErr == nil {
			if writeErr = t.write(c); writeErr != nil {
				cancel(writeErr)
			}
		}
		free <- c.buf[:cap(c.buf)]
	}
	switch {
	case writeErr != nil:
		return writeErr
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
		n, err := body.Read(buf)
		if n > 0 {
			stall.Reset(t.s.cfg.StallTimeout)
			t.h.Write(buf[:n])
			hashed += int64(n)
			c := chunk{buf: buf[:n]}
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
	if inject := t.s.writeFault; inject != nil {
		if err := inject(len(c.buf)); err != nil {
			return diskError(t.j.pool, err)
		}
	}
	n, err := t.f.Write(c.buf)
	t.done += int64(n)
	if err != nil {
		return diskError(t.j.pool, err)
	}
	t.writeBack()
	t.s.metrics.bytes.Add(float64(n))
	t.j.progress(t.done)
	if !t.headChecked {
		t.head = append(t.head, c.buf[:min(len(c.buf), headSize-len(t.head))]...)
		if len(t.head) >= headSize {
			if err := t.checkHead(); err != nil {
				return err
			}
		}
	}
	if c.state != nil {
		t.saveCheckpoint(c.state)
	}
	return nil
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

// checkpoint saves the exact state: call it only when no stream runs.
func (t *transfer) checkpoint() {
	state, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return
	}
	t.saveCheckpoint(state)
}

func (t *transfer) saveCheckpoint(state []byte) {
	t.j.update(func(r *record) {
		r.BytesDone, r.BytesTotal, r.HashAlgo, r.HashState = t.done, t.total, t.algo, state
		r.ETag, r.LastModified = t.etag, t.lastModified
	})
	t.j.save()
}

// checkHead tells a disk image from what mirrors send when things go
// wrong: an HTML or XML error page, or anything but qcow2 where qcow2 is
// expected. Raw images can start with anything, so only pages are refused.
func (t *transfer) checkHead() error {
	if t.headChecked {
		return nil
	}
	t.headChecked = true
	if len(t.head) == 0 {
		return fault.New(fault.NotADiskImage, "mirror sent an empty file for %s", redact(t.req.URL))
	}
	start := bytes.ToLower(bytes.TrimLeft(t.head, " \t\r\n\xef\xbb\xbf"))
	for _, p := range []string{"<!doctype", "<html", "<?xml", "<head", "<body"} {
		if bytes.HasPrefix(start, []byte(p)) {
			return fault.New(fault.NotADiskImage, "mirror sent a web page instead of a disk image (it starts with %q): check the URL in a browser", string(t.head[:min(len(t.head), 40)]))
		}
	}
	if t.qcow2 && !bytes.HasPrefix(t.head, []byte("QFI\xfb")) {
		return fault.New(fault.NotADiskImage, "%s should be a qcow2 image but does not start with the qcow2 magic (first bytes %q): check the URL and the format", t.req.FileName, string(t.head[:min(len(t.head), 8)]))
	}
	return nil
}

// publish verifies the whole file and moves it, by one atomic rename, to
// where images live.
func (t *transfer) publish() error {
	j := t.j
	j.update(func(r *record) { r.State, r.BytesDone, r.BytesTotal = StateVerifying, t.done, t.total })
	if err := t.checkHead(); err != nil {
		return err
	}
	if t.req.SizeBytes > 0 && t.done != t.req.SizeBytes {
		return fault.New(fault.NotADiskImage, "mirror sent %d bytes, the image is %d bytes (size_bytes): the file is truncated", t.done, t.req.SizeBytes)
	}
	got := checksum.Of(t.algo, t.h)
	if want := t.req.Checksum; want != "" && !strings.EqualFold(got, want) {
		return fault.New(fault.ChecksumMismatch, "the downloaded file's checksum is %s, the request expects %s: the mirror serves other bytes than the checksum describes (a changed image, a wrong checksum, or a corrupting proxy)", got, want)
	}
	syncStart := time.Now()
	if err := t.f.Sync(); err != nil {
		return diskError(j.pool, err)
	}
	j.log.Debug("partial data synced to disk", "took", time.Since(syncStart))
	if err := t.f.Close(); err != nil {
		t.f = nil
		return diskError(j.pool, err)
	}
	t.f = nil
	if err := j.pool.root.Rename(partName(t.req.ID), t.req.FileName); err != nil {
		return fault.New(fault.Internal, "publish %s: %v", j.pool.path(t.req.FileName), err)
	}
	if err := j.pool.syncDir(); err != nil {
		j.log.Warn("sync images folder", "err", err)
	}
	now := time.Now().UTC()
	j.update(func(r *record) {
		r.State, r.Checksum, r.FinishedAt, r.HashState, r.Error = StateCompleted, got, &now, nil, nil
	})
	j.save()
	return nil
}

// diskError turns a file-system error into the contract's codes: a full
// disk (or quota) is disk_full, anything else internal; both retryable,
// since another node's disk may do.
func diskError(p *pool, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fault.Retryable(fault.DiskFull, "pool %s is full (%v): free space in %s or use another pool", p.id, err, p.dir)
	}
	return fault.Retryable(fault.Internal, "pool %s: %v", p.id, err)
}

// requestError classifies a failed request: refused by the URL policy
// (not retryable), or the mirror could not be reached (retryable).
func requestError(ctx context.Context, err error, req *http.Request) error {
	if fe, ok := asForbidden(err); ok {
		return fault.New(fault.URLForbidden, "%s: %s", redact(req.URL.String()), fe.msg)
	}
	if errors.Is(context.Cause(ctx), errStalled) {
		return fault.Retryable(fault.UpstreamError, "mirror %s did not answer in time", req.URL.Host)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fault.Retryable(fault.UpstreamError, "mirror %s did not answer in time: %v", req.URL.Host, unwrapURLError(err))
	}
	return fault.Retryable(fault.UpstreamError, "cannot reach the mirror %s: %v", req.URL.Host, unwrapURLError(err))
}

func readError(ctx context.Context, err error, done int64) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fault.Retryable(fault.UpstreamError, "mirror stopped sending after %d bytes", done)
	}
	return fault.Retryable(fault.UpstreamError, "connection to the mirror lost after %d bytes: %v", done, err)
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// parseContentRange reads "bytes START-END/TOTAL" and "bytes */TOTAL".
func parseContentRange(h string) (start, total int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, false
	}
	total, err := strconv.ParseInt(tot, 10, 64)
	if err != nil || total < 0 {
		return 0, 0, false
	}
	if rng == "*" {
		return -1, total, true
	}
	from, _, found := strings.Cut(rng, "-")
	start, err = strconv.ParseInt(from, 10, 64)
	if !found || err != nil || start < 0 {
		return 0, 0, false
	}
	return start, total, true
}

// strongETag keeps an ETag that If-Range may carry: weak ones may not.
func strongETag(etag string) string {
	if strings.HasPrefix(etag, "W/") {
		return ""
	}
	return etag
}

func expectsQCOW2(req DownloadRequest) bool {
	if req.Format != "" {
		return strings.EqualFold(req.Format, "qcow2")
	}
	return strings.HasSuffix(strings.ToLower(req.FileName), ".qcow2")
}

// redact hides a password in a URL, for messages and logs.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}
