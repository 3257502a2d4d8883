package nodeagent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// Why a job's context ends, when it is not the job's own doing.
var (
	errCancelled = errors.New("download cancelled")
	errShutdown  = errors.New("node agent shutting down")
	errStalled   = errors.New("mirror stalled")
	errPaused    = errors.New("download paused")
)

// record is what the agent keeps of a job on disk, next to its partial
// data: enough to answer for it after a restart and to resume it without
// re-reading the partial file (the hash state at BytesDone).
type record struct {
	Request agentclient.DownloadRequest `json:"request"`
	// NodeID is the agent that owns the job. On a shared pool the others
	// leave it alone at their start; one takes it over only when asked to
	// run the same download (a failover).
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	BytesDone    int64  `json:"bytes_done"`
	BytesTotal   int64  `json:"bytes_total"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	HashAlgo     string `json:"hash_algo,omitempty"`
	HashState    []byte `json:"hash_state,omitempty"`
	Checksum     string `json:"checksum,omitempty"`
	// Format and VirtualSize are what inspecting the finished file found.
	Format      string       `json:"format,omitempty"`
	VirtualSize int64        `json:"virtual_size_bytes,omitempty"`
	Error       *fault.Error `json:"error,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	StartedAt   *time.Time   `json:"started_at,omitempty"`
	FinishedAt  *time.Time   `json:"finished_at,omitempty"`

	// TakenFrom names the node whose partial data and hash state this
	// node took over (a failover on a shared pool) and has not yet made
	// its own: the prefix is copied to this node's partial file and hashed
	// again from the disk before it is trusted.
	TakenFrom string `json:"taken_from,omitempty"`

	// Compression is what the downloaded bytes' magic said ("none", "xz"…);
	// FileChecksum ("sha256:HEX") and FileSize are the published file's,
	// which for a compressed download are not the downloaded bytes'.
	Compression  string `json:"compression,omitempty"`
	FileChecksum string `json:"file_checksum,omitempty"`
	FileSize     int64  `json:"file_size,omitempty"`

	// MirrorBytes counts the bytes of BytesDone each URL served (the
	// request's URL, then its mirrors), and Mirror is the one in use: a
	// resume goes on from it.
	MirrorBytes []int64 `json:"mirror_bytes,omitempty"`
	Mirror      int     `json:"mirror,omitempty"`
	// Upload: the job receives its bytes by PATCH /v1/uploads/{id}
	// rather than from Request.URL (see upload.go).
	Upload bool `json:"upload,omitempty"`
}

// job is one download on this agent. Its goroutine owns the transfer; the
// HTTP handlers read snapshots and may cancel it.
type job struct {
	pool *pool
	log  *slog.Logger

	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the job's goroutine has ended
	up     *uploading    // an upload's, while it runs; nil for a download

	mu   sync.Mutex
	rec  record
	live int64 // bytes on disk now, ahead of rec.BytesDone between checkpoints
	rate meter // of the download

	// While converting, the progress shown is qemu-img's: convDone of
	// convTotal bytes (the image's virtual size) converted.
	convDone, convTotal int64
	convRate            meter

	served []int64 // bytes on disk by mirror, live like live

	// secret is the request's credential with its secret (the record holds
	// it redacted); nil until the worker sends it, and after a restart.
	// credReady is closed once it is there.
	secret    *agentclient.Credential
	credReady chan struct{}
	// peer is a peer copy's source with its token (peer.go): in memory
	// only, like secret, and replaced when the worker names another;
	// sourceMoved wakes a transfer waiting to retry when it is.
	peer        *agentclient.PeerSource
	sourceMoved chan struct{}

	// version grows with every change a GET would show: stateVersion is
	// the version of the last change of state. changed, made when a
	// long-poll waits, is closed at the next change (see longpoll.go).
	version, stateVersion int64
	changed               chan struct{}
	firstVersion          int64 // its version when made
}

// meter measures a rate from samples taken about a second apart.
type meter struct {
	bytesPerSecond float64
	at             time.Time
	bytes          int64
}

func (m *meter) sample(done int64, now time.Time) {
	if m.at.IsZero() || done < m.bytes {
		m.at, m.bytes = now, done
		return
	}
	if dt := now.Sub(m.at); dt >= time.Second {
		m.bytesPerSecond = float64(done-m.bytes) / dt.Seconds()
		m.at, m.bytes = now, done
	}
}

func newJob(p *pool, rec record, log *slog.Logger) *job {
	j := &job{pool: p, rec: rec, live: rec.BytesDone, done: make(chan struct{}), credReady: make(chan struct{}), sourceMoved: make(chan struct{}, 1)}
	// Versions start at the clock, in microseconds, so that a job made
	// again (a restart of the agent, a download started again) never
	// reuses a version a worker still holds from the one before.
	j.version = time.Now().UnixMicro()
	j.stateVersion, j.firstVersion = j.version, j.version
	j.served = fitServed(rec.MirrorBytes, len(rec.Request.URLs()))
	j.log = log.With("download_id", rec.Request.ID, "pool_id", p.id, "file_name", rec.Request.FileName)
	if agentclient.FinishedState(rec.State) || rec.State == agentclient.StatePaused {
		close(j.done) // no goroutine runs it
	}
	return j
}

func (j *job) request() agentclient.DownloadRequest {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec.Request
}

func (j *job) state() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec.State
}

// record returns a copy of the job's record, for saving or reading.
func (j *job) record() record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec
}

func (j *job) update(f func(r *record)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	before := j.rec.State
	f(&j.rec)
	j.bumpLocked(j.rec.State != before)
}

// save writes the job's record to its pool, unless another node has taken
// the job over (errFenced: the record names that node); any other failure
// is logged, not fatal: the record is what a restart would resume from.
func (j *job) save() error {
	r := j.record()
	if owner, err := j.pool.owner(r.Request.ID); err == nil && owner != "" && owner != r.NodeID {
		j.log.Info("download taken over by another node; not recording it here", "owner", owner)
		return errFenced
	}
	if err := j.pool.saveRecord(&r); err != nil {
		j.log.Error("save download record", "err", err)
	}
	return nil
}

// claim writes the job's record as this node's, whoever's it was: the
// start of a job, or the takeover of another node's (which fences that
// node off).
func (j *job) claim() {
	r := j.record()
	if err := j.pool.saveRecord(&r); err != nil {
		j.log.Error("save download record", "err", err)
	}
}

// node is the node that runs the job here (this agent).
func (j *job) node() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec.NodeID
}

// fenced is the error of a job another node has taken over.
func fenced(j *job) error {
	return fault.New(fault.Conflict, "another node took download %s over while this one was unreachable; this node stops and leaves it to that one", j.request().ID)
}

// progress records the bytes on disk and, about once a second, the rate.
func (j *job) progress(done int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if done != j.live {
		j.bumpLocked(false)
	}
	j.live = done
	j.rate.sample(done, time.Now())
}

// converted records how far a conversion is: done of total bytes of the
// image's virtual size, and about once a second the rate.
func (j *job) converted(done, total int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if total != j.convTotal {
		j.convRate = meter{}
	}
	if done != j.convDone || total != j.convTotal {
		j.bumpLocked(false)
	}
	j.convDone, j.convTotal = done, total
	j.convRate.sample(done, time.Now())
}

func (j *job) snapshot() agentclient.Download {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rec
	d := agentclient.Download{
		ID:               r.Request.ID,
		PoolID:           r.Request.PoolID,
		FileName:         r.Request.FileName,
		Path:             j.pool.path(r.Request.FileName),
		State:            r.State,
		BytesDone:        j.live,
		BytesTotal:       r.BytesTotal,
		Checksum:         r.Checksum,
		Format:           r.Format,
		VirtualSizeBytes: r.VirtualSize,
		Compression:      r.Compression,
		FileChecksum:     r.FileChecksum,
		Mirrors:          servedBy(r.Request.URLs(), j.served),
		Error:            r.Error,
		StartedAt:        r.StartedAt,
		FinishedAt:       r.FinishedAt,
		Version:          j.version,
	}
	if d.BytesTotal <= 0 {
		d.BytesTotal = r.Request.SizeBytes
	}
	switch {
	case r.Upload: // pushed to the agent: neither source
	case r.Request.Peer == nil:
		d.Source = agentclient.SourceMirror
	default:
		d.Source, d.Mirrors = agentclient.SourcePeer, nil
		for _, n := range j.served {
			d.BytesFromPeer += n
		}
	}
	if d.Checksum == "" {
		d.Checksum = r.Request.Checksum
	}
	switch {
	case r.State == agentclient.StateRunning:
		d.BytesPerSecond = j.rate.bytesPerSecond
	case r.State == agentclient.StateConverting && j.convTotal > 0:
		// The download is whole and verified; what moves now is the
		// conversion, so that is what the bytes and the rate show.
		d.BytesDone, d.BytesTotal, d.BytesPerSecond = j.convDone, j.convTotal, j.convRate.bytesPerSecond
	}
	return d
}

// finish puts the job in a final state.
func (j *job) finish(state string, fe *fault.Error) {
	now := time.Now().UTC()
	j.update(func(r *record) {
		r.State, r.Error, r.FinishedAt = state, fe, &now
		r.HashState = nil
	})
}

// failKeeping fails a job and keeps its checkpoint (the hash state of the
// partial data left in the pool), for a next try to resume (peer.go).
func (j *job) failKeeping(fe *fault.Error) {
	now := time.Now().UTC()
	j.update(func(r *record) { r.State, r.Error, r.FinishedAt = agentclient.StateFailed, fe, &now })
}

// keptPartial reports whether a failed job kept its partial data.
func (j *job) keptPartial() bool {
	r := j.record()
	return r.State == agentclient.StateFailed && len(r.HashState) > 0
}

// fileIntact reports whether a completed job's file is still in its pool
// as it was published (a regular file of the published size).
func (j *job) fileIntact() bool {
	r := j.record()
	fi, err := j.pool.root.Lstat(r.Request.FileName)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == r.publishedSize()
}

// publishedSize is the size of the file a completed job published: the
// decompressed size of a compressed download, the downloaded one
// otherwise (and in records from before FileSize was kept).
func (r record) publishedSize() int64 {
	if r.FileSize > 0 {
		return r.FileSize
	}
	return r.BytesTotal
}

// restartable says whether a POST of the same request starts the job
// again: after a cancel, a pause (it resumes), or a failure another
// attempt may get past.
func (j *job) restartable() bool {
	r := j.record()
	return r.State == agentclient.StateCancelled || r.State == agentclient.StatePaused ||
		(r.State == agentclient.StateFailed && r.Error != nil && r.Error.Retryable)
}

func newRecord(req agentclient.DownloadRequest, nodeID string) record {
	return record{Request: req, NodeID: nodeID, State: agentclient.StateQueued, CreatedAt: time.Now().UTC()}
}

// addServed counts n more bytes on disk from mirror i.
func (j *job) addServed(i int, n int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.served[i] += n
}

// setServed sets the bytes on disk by mirror (nil: none).
func (j *job) setServed(served []int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.served = fitServed(served, len(j.rec.Request.URLs()))
}

// servedNow is a copy of the bytes on disk by mirror.
func (j *job) servedNow() []int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.served)
}
