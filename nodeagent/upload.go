package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/source"
)

// An upload is a job whose bytes are pushed to the agent (PATCH
// /v1/uploads/{id}, streamed by the API from the uploader) instead of
// fetched from a mirror. It shares everything else with a download: the
// partial file and its record in the pool, the hash state checkpointed
// next to it, the verification, inspection, conversion and atomic publish,
// and GET and DELETE /v1/downloads/{id}.
//
// Its offset is the record's BytesDone: the bytes on disk, synced, whose
// hash state is saved. Every PATCH starts from the record (as a resume
// after a restart does), writes, and saves a checkpoint before it answers,
// so what it acknowledges survives a crash, and an agent restarted at any
// moment carries on from its own offset.

// lockWait is how long a PATCH waits for the one before it on the same
// upload to stop: when an uploader reconnects, the agent may not have seen
// the old connection drop yet.
const lockWait = 5 * time.Second

// uploading is what a job that receives an upload has besides a download's.
type uploading struct {
	ctx  context.Context // the job's: ends when it is cancelled, fails, or the agent stops
	lock chan struct{}   // one PATCH at a time
	full chan struct{}   // closed once every byte is on disk and checkpointed
}

func newUploading(ctx context.Context) *uploading {
	return &uploading{ctx: ctx, lock: make(chan struct{}, 1), full: make(chan struct{})}
}

// ValidateUpload checks an upload request as the agent does before it
// accepts one, apart from which pools exist; it normalises the checksum.
func ValidateUpload(req *agentclient.UploadRequest) error {
	if err := catalog.ValidName(req.ID); err != nil {
		return fault.New(fault.InvalidRequest, "id: %v", err)
	}
	if req.PoolID == "" {
		return fault.New(fault.InvalidRequest, "pool_id is required")
	}
	if err := catalog.ValidName(req.FileName); err != nil {
		return fault.New(fault.InvalidRequest, "file_name: %v", err)
	}
	if req.SizeBytes <= 0 {
		return fault.New(fault.InvalidRequest, "size_bytes is %d: an upload declares its exact size in bytes", req.SizeBytes)
	}
	sum, err := source.ParseChecksum(req.Checksum)
	if err != nil {
		return err
	}
	req.Checksum = sum
	if err := checkConvertTo(req.ConvertTo); err != nil {
		return err
	}
	return source.CheckFormat(req.Format)
}

// asDownload is the download request an upload's job and record carry: no
// URL, the declared size as the exact size.
func asDownload(u agentclient.UploadRequest) agentclient.DownloadRequest {
	return agentclient.DownloadRequest{ID: u.ID, PoolID: u.PoolID, FileName: u.FileName, Checksum: u.Checksum,
		SizeBytes: u.SizeBytes, Format: u.Format, ConvertTo: u.ConvertTo}
}

func (s *Server) handleStartUpload(w http.ResponseWriter, r *http.Request) {
	var req agentclient.UploadRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fault.New(fault.InvalidRequest, "request body is not an upload request: %v", err))
		return
	}
	if req.ID != r.PathValue("id") {
		writeError(w, fault.New(fault.InvalidRequest, "the body's id %q is not the path's %q", req.ID, r.PathValue("id")))
		return
	}
	if err := ValidateUpload(&req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.validate(&agentclient.DownloadRequest{ID: req.ID, URL: "https://upload.invalid/", PoolID: req.PoolID,
		FileName: req.FileName, ConvertTo: req.ConvertTo}); err != nil {
		writeError(w, err)
		return
	}
	d, status, err := s.startUpload(req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, d)
}

// startUpload creates the job of an upload, or finds it: 201 for a new
// one, 200 for the same request again, 409 for another request under the
// same id or a file name another job writes or a file holds.
func (s *Server) startUpload(u agentclient.UploadRequest) (agentclient.Download, int, error) {
	req := asDownload(u)
	p := s.pools[req.PoolID]
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[req.ID]; ok {
		if !j.request().Same(req) || !j.rec.Upload {
			return agentclient.Download{}, 0, fault.New(fault.Conflict, "job %s already exists with another request: use a new id", req.ID)
		}
		return j.snapshot(), http.StatusOK, nil
	}
	for _, other := range s.jobs {
		o := other.request()
		if o.PoolID == req.PoolID && o.FileName == req.FileName && !agentclient.FinishedState(other.state()) {
			return agentclient.Download{}, 0, fault.New(fault.Conflict, "job %s is already writing %s in pool %s: wait for it or cancel it", o.ID, req.FileName, req.PoolID)
		}
	}
	if req.SizeBytes > s.cfg.MaxImageSize {
		return agentclient.Download{}, 0, tooLarge(req.SizeBytes, s.cfg.MaxImageSize)
	}
	if room, err := p.room(s.minFree); err == nil && req.SizeBytes > room {
		return agentclient.Download{}, 0, s.noRoom(p, room, req.SizeBytes)
	}
	if _, err := p.root.Lstat(req.FileName); err == nil {
		return agentclient.Download{}, 0, s.takenLocked(p, req)
	}
	if err := p.removeJobFiles(req.ID, s.cfg.NodeID, false); err != nil {
		s.log.Warn("remove stale upload files", "download_id", req.ID, "pool_id", p.id, "err", err)
	}
	rec := newRecord(req, s.cfg.NodeID)
	rec.Upload, rec.State = true, agentclient.StateRunning
	now := time.Now().UTC()
	rec.StartedAt = &now
	j := newJob(p, rec, s.log)
	s.jobs[req.ID] = j
	j.claim()
	s.launchUpload(j)
	j.log.Info("upload created; waiting for its bytes", "size_bytes", req.SizeBytes)
	return j.snapshot(), http.StatusCreated, nil
}

// launchUpload starts the goroutine that publishes an upload once all its
// bytes are in, and cleans up when it is cancelled. Called with s.mu held.
func (s *Server) launchUpload(j *job) {
	ctx, cancel := context.WithCancelCause(s.base)
	j.cancel = cancel
	j.up = newUploading(ctx)
	if r := j.record(); r.BytesDone == r.Request.SizeBytes || r.State != agentclient.StateRunning {
		close(j.up.full) // a restart cut the publish short: it runs again
	}
	s.wg.Add(1)
	go s.runUpload(ctx, j)
}

// runUpload waits for the upload's last byte, then verifies, inspects,
// converts and publishes it as a download's. A cancel (or a PATCH that
// found the upload bad) ends it, once no PATCH writes any more, with its
// partial data removed; a shutdown leaves that data for the next start.
func (s *Server) runUpload(ctx context.Context, j *job) {
	defer s.wg.Done()
	defer close(j.done)
	select {
	case <-j.up.full:
	case <-ctx.Done():
	}
	j.up.lock <- struct{}{} // a PATCH in flight sees ctx end and stops
	defer func() { <-j.up.lock }()
	if ctx.Err() != nil {
		s.end(j, context.Cause(ctx))
		return
	}
	err := s.publishUpload(ctx, j)
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	s.end(j, err)
}

func (s *Server) publishUpload(ctx context.Context, j *job) error {
	t, err := s.openTransfer(j)
	if err != nil {
		return err
	}
	defer t.release()
	if t.done != t.req.SizeBytes {
		return fault.New(fault.Internal, "upload %s has %d of its %d bytes on disk after a restart", t.req.ID, t.done, t.req.SizeBytes)
	}
	j.log.Info("upload received; verifying", "bytes", t.done)
	return t.publish(ctx)
}

func (s *Server) uploadJob(w http.ResponseWriter, id string) (*job, bool) {
	j, ok := s.job(id)
	if !ok || !j.isUpload() {
		writeError(w, fault.New(fault.NotFound, "no upload %q on node %s", id, s.cfg.NodeID))
		return nil, false
	}
	return j, true
}

func (s *Server) handleGetUpload(w http.ResponseWriter, r *http.Request) {
	j, ok := s.uploadJob(w, r.PathValue("id"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, j.upload())
}

// handlePatchUpload writes a body at the upload's offset: 200 with the
// upload as it then stands (its offset counts every byte kept, a body cut
// short included), 409 when Upload-Offset is not the upload's offset, 423
// while another PATCH still writes. A body that would take the upload past
// its declared size, or whose first bytes are no disk image, fails the
// upload.
func (s *Server) handlePatchUpload(w http.ResponseWriter, r *http.Request) {
	j, ok := s.uploadJob(w, r.PathValue("id"))
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/offset+octet-stream" {
		writeError(w, fault.New(fault.UnsupportedMediaType, "a PATCH body is Content-Type: application/offset+octet-stream, not %q", ct))
		return
	}
	offset, err := strconv.ParseInt(r.Header.Get(agentclient.OffsetHeader), 10, 64)
	if err != nil || offset < 0 {
		writeError(w, fault.New(fault.InvalidRequest, "Upload-Offset %q: give the upload's offset in bytes", r.Header.Get(agentclient.OffsetHeader)))
		return
	}
	if j.up == nil { // ended before this agent started: nothing runs it
		writeError(w, fault.New(fault.Conflict, "upload %s is %s: it takes no more bytes", j.request().ID, j.state()))
		return
	}
	select {
	case j.up.lock <- struct{}{}:
		defer func() { <-j.up.lock }()
	case <-time.After(lockWait):
		writeJSON(w, http.StatusLocked, fault.Body{Error: fault.Retryable(fault.Conflict, "another request is still writing upload %s: try again in a moment", j.request().ID)})
		return
	}
	if err := s.receiveUpload(w, r, j, offset); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j.upload())
}

// receiveUpload writes the body of r at offset, with the PATCH lock held.
func (s *Server) receiveUpload(w http.ResponseWriter, r *http.Request, j *job, offset int64) error {
	rec := j.record()
	switch {
	case j.up == nil || j.up.ctx.Err() != nil || rec.State != agentclient.StateRunning:
		return fault.New(fault.Conflict, "upload %s is %s: it takes no more bytes", rec.Request.ID, j.state())
	case offset != rec.BytesDone:
		return fault.New(fault.Conflict, "Upload-Offset is %d but upload %s is at %d: send the bytes from %d on", offset, rec.Request.ID, rec.BytesDone, rec.BytesDone)
	case r.ContentLength > 0 && offset+r.ContentLength > rec.Request.SizeBytes:
		err := fault.New(fault.TooLarge, "the body takes the upload to %d bytes, past the %d it declared (Upload-Length): upload the file again with its real size", offset+r.ContentLength, rec.Request.SizeBytes)
		j.cancel(err)
		return err
	}
	// The body may take long; the stall timer, not the server's read
	// timeout, ends one that stops moving.
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(j.up.ctx, func() { cancel(context.Cause(j.up.ctx)) })
	defer stop()
	t, err := s.openTransfer(j)
	if err != nil {
		return err
	}
	defer t.release()
	if t.done != offset {
		return fault.Retryable(fault.Conflict, "upload %s is at %d on disk: send the bytes from there", rec.Request.ID, t.done)
	}
	stall := time.AfterFunc(s.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	readErr, err := t.pump(ctx, cancel, r.Body, stall)
	// Whatever ended the body, the bytes kept are checkpointed: that is
	// the offset the uploader resumes from (a restart's too).
	if cerr := t.saveCheckpointNow(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		if fe := fault.From(err); !fe.Retryable {
			j.cancel(fe) // the upload is bad: it fails, and its data goes
		}
		return err
	}
	if cause := context.Cause(j.up.ctx); cause != nil {
		return fault.New(fault.Conflict, "upload %s stopped: %v", rec.Request.ID, cause)
	}
	done := j.record().BytesDone
	if readErr != io.EOF {
		j.log.Info("upload body ended early; kept what came", "offset", done, "err", readErr)
		if errors.Is(context.Cause(ctx), errStalled) {
			return fault.Retryable(fault.UpstreamError, "the upload's body sent nothing for %s: resume from offset %d", s.cfg.StallTimeout, done)
		}
	}
	if done == rec.Request.SizeBytes {
		select {
		case <-j.up.full:
		default:
			close(j.up.full)
		}
	}
	return nil
}

// release closes a transfer's files and gives back its buffers.
func (t *transfer) release() {
	_ = t.closeFiles()
	for _, b := range t.bufs {
		bufPool.Put(&b)
	}
	t.bufs = nil
}

// isUpload reports whether the job receives an upload.
func (j *job) isUpload() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec.Upload
}

// upload is the job as an agentclient.Upload.
func (j *job) upload() agentclient.Upload {
	j.mu.Lock()
	defer j.mu.Unlock()
	return agentclient.Upload{ID: j.rec.Request.ID, PoolID: j.rec.Request.PoolID, Offset: j.rec.BytesDone,
		Length: j.rec.Request.SizeBytes, State: j.rec.State, Error: j.rec.Error}
}
