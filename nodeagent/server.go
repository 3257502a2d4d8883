package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// retention is how long finished jobs are remembered (GET answers for
// them, across restarts) before their records are pruned.
const retention = 7 * 24 * time.Hour

// Server is a node agent: its pools, its download jobs, and its HTTP API.
// New resumes the unfinished jobs it finds in the pools; Close stops them
// so that the next start resumes them again.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pools    map[string]*pool
	order    []*pool
	upstream *http.Client
	// upstreamOpts are upstream's options, which peer clients share.
	upstreamOpts upstreamOptions
	// bandwidth is the token bucket all downloads share (--max-bandwidth);
	// nil: no cap.
	bandwidth *rate.Limiter
	metrics   *metrics
	handler   http.Handler
	verifier  *nodeauth.Verifier
	slots     chan struct{} // one token per running download
	minFree   reserve
	qemuImg   string // the qemu-img conversions run; "" when there is none
	// noQemuImg says why there is no qemu-img, and what to do (health).
	noQemuImg string

	base context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job

	// draining is closed when the agent stops taking requests: long-polls
	// answer then rather than hold up the shutdown.
	draining  chan struct{}
	drainOnce sync.Once

	// writeFault, when set (by tests only, see export_test.go), is called
	// before each write to a partial file or a decompressed work file; an
	// error it returns is treated as the write's error. It exists for
	// machines where a tiny file system cannot be mounted to produce a
	// real ENOSPC.
	writeFault func(n int) error
	// datasync flushes a partial file before a checkpoint is recorded
	// (fdatasync; tests watch or fail it through export_test.go).
	datasync func(*os.File) error
	// linkPublish, when set (by tests only), publishes by link and unlink
	// as on file systems that refuse RENAME_NOREPLACE.
	linkPublish bool
	// convertReport, when set (by tests only), is called with each of
	// qemu-img's progress reports once the job shows it.
	convertReport func(percent float64)
}

// New opens the pools, resumes the unfinished downloads recorded in them,
// and returns the agent, ready to serve Handler.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("nodeagent: a node id is required")
	case catalog.ValidName(cfg.NodeID) != nil:
		return nil, fmt.Errorf("nodeagent: node id: %w", catalog.ValidName(cfg.NodeID))
	case cfg.Token == "":
		return nil, errors.New("nodeagent: a token is required: every request must carry it")
	case len(cfg.Pools) == 0:
		return nil, errors.New("nodeagent: at least one pool is required")
	}
	minFree, err := parseMinFree(cfg.MinFree)
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	upstream, upstreamOpts, err := upstreamFor(cfg, cfg.Logger.With("node_id", cfg.NodeID))
	if err != nil {
		return nil, fmt.Errorf("nodeagent: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger.With("node_id", cfg.NodeID),
		pools:        map[string]*pool{},
		upstream:     upstream,
		upstreamOpts: upstreamOpts,
		bandwidth:    newLimiter(cfg.MaxBandwidth),
		slots:        make(chan struct{}, cfg.MaxConcurrent),
		minFree:      minFree,
		datasync:     fdatasync,
		jobs:         map[string]*job{},
		draining:     make(chan struct{}),
	}
	if s.qemuImg, err = findQemuImg(cfg.QemuImg); err != nil {
		s.qemuImg, s.noQemuImg = "", converterWarning(err)
		s.log.Warn(s.noQemuImg, "qemu_img", cfg.QemuImg)
	} else {
		s.log.Info("images are converted with qemu-img when a pool asks for a format", "qemu_img", s.qemuImg)
	}
	for _, pd := range cfg.Pools {
		if err := catalog.ValidName(pd.ID); err != nil {
			s.closePools()
			return nil, fmt.Errorf("pool id: %w", err)
		}
		if _, dup := s.pools[pd.ID]; dup {
			s.closePools()
			return nil, fmt.Errorf("pool %s is given twice", pd.ID)
		}
		p, err := openPool(pd)
		if err != nil {
			s.closePools()
			return nil, err
		}
		s.pools[p.id] = p
		s.order = append(s.order, p)
	}
	if s.verifier, err = nodeauth.NewVerifier(cfg.Token); err != nil {
		s.closePools()
		return nil, err
	}
	if !nodeauth.LooksLikeCredential(cfg.Token) {
		s.log.Warn("the node token is not a node credential: the worker sends each agent the credential 'cloudimages node-token --node-id ID' prints from the cluster secret, so it will be refused here", "node_id", cfg.NodeID)
	}
	s.metrics = newMetrics(s)
	s.handler = s.routes()
	s.base, s.stop = context.WithCancelCause(context.Background())
	s.mu.Lock()
	s.load()
	s.mu.Unlock()
	s.wg.Add(1)
	go s.pruneLoop()
	return s, nil
}

// Handler is the agent's HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops every running download at its current checkpoint (the next
// start resumes it) and waits for them.
func (s *Server) Close() {
	s.drain()
	s.stop(errShutdown)
	s.wg.Wait()
	s.closePools()
}

// drain makes the long-polls still waiting answer now: the agent stops.
func (s *Server) drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}

func (s *Server) closePools() {
	for _, p := range s.pools {
		p.root.Close()
	}
}

// load picks up the records in the pools: finished and paused jobs are
// remembered, the others queued again. Called with s.mu held.
func (s *Server) load() {
	for _, p := range s.order {
		ids, err := p.recordIDs()
		if err != nil {
			s.log.Error("list download records", "pool_id", p.id, "err", err)
			continue
		}
		for _, id := range ids {
			rec, err := p.loadRecord(id)
			if err != nil {
				s.log.Warn("skip unreadable download record", "pool_id", p.id, "err", err)
				continue
			}
			if rec.Request.PoolID != p.id || rec.NodeID != s.cfg.NodeID {
				continue // another node's job in a shared pool, or a pool given under another id
			}
			if old, ok := s.jobs[id]; ok && old.record().CreatedAt.After(rec.CreatedAt) {
				continue
			}
			j := newJob(p, *rec, s.log)
			s.jobs[id] = j
			if rec.Upload && !agentclient.FinishedState(rec.State) {
				j.log.Info("upload waits for its bytes again after restart", "offset", rec.BytesDone)
				s.launchUpload(j)
				continue
			}
			if !agentclient.FinishedState(rec.State) && rec.State != agentclient.StatePaused {
				j.update(func(r *record) { r.State = agentclient.StateQueued })
				j.log.Info("resuming download after restart", "bytes_done", rec.BytesDone)
				s.launch(j)
			}
		}
	}
}

// launch starts a job's goroutine. Called with s.mu held.
func (s *Server) launch(j *job) {
	ctx, cancel := context.WithCancelCause(s.base)
	j.cancel = cancel
	s.wg.Add(1)
	go s.run(ctx, j)
}

// run waits for a slot, downloads, and records how it ended.
func (s *Server) run(ctx context.Context, j *job) {
	defer s.wg.Done()
	defer close(j.done)
	if err := j.waitCredential(ctx); err != nil {
		s.end(j, err)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		s.end(j, context.Cause(ctx))
		return
	}
	now := time.Now().UTC()
	j.update(func(r *record) {
		r.State = agentclient.StateRunning
		if r.StartedAt == nil {
			r.StartedAt = &now
		}
	})
	j.save()
	if p := j.request().Peer; p != nil {
		j.log.Info("peer copy started", "peer", p.String())
	} else {
		j.log.Info("download started", "url", redact(j.request().URL))
	}
	err := s.download(ctx, j)
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx) // stopped, not failed; a published file stays published
	}
	s.end(j, err)
}

// end records how a job ended: published, stopped for a shutdown (left to
// resume), cancelled, or failed. Cancelled and failed jobs leave no
// partial data behind.
func (s *Server) end(j *job, err error) {
	switch {
	case err == nil:
		s.metrics.completed.Inc()
		d := j.snapshot()
		j.log.Info("download published", "path", d.Path, "bytes", d.BytesDone, "checksum", d.Checksum)
	case errors.Is(err, errShutdown):
		j.log.Info("download stopped for shutdown; it resumes at the next start")
	case errors.Is(err, errPaused):
		// Like a shutdown, the partial data and the checkpoint stay (the
		// transfer saved it as it stopped); unlike one, the job waits for
		// a start of the same request, even across restarts.
		j.update(func(r *record) { r.State = agentclient.StatePaused })
		j.save()
		j.log.Info("download paused; partial data kept", "bytes_done", j.record().BytesDone)
	case errors.Is(err, errCancelled):
		if e := j.pool.removeJobFiles(j.request().ID, j.node(), true); e != nil {
			j.log.Error("remove partial data", "err", e)
		}
		j.finish(agentclient.StateCancelled, fault.New(fault.Cancelled, "download cancelled"))
		j.save()
		j.log.Info("download cancelled; partial data removed")
	case keepsPartial(j.request(), err):
		fe := fault.From(err)
		j.failKeeping(fe)
		j.save()
		s.metrics.failures.WithLabelValues(fe.Code).Inc()
		j.log.Warn("peer copy failed; partial data kept for the next try from another source", "code", fe.Code, "bytes_done", j.record().BytesDone, "err", fe.Message)
	default:
		fe := fault.From(err)
		if e := j.pool.removeJobFiles(j.request().ID, j.node(), true); e != nil {
			j.log.Error("remove partial data", "err", e)
		}
		j.finish(agentclient.StateFailed, fe)
		j.save()
		s.metrics.failures.WithLabelValues(fe.Code).Inc()
		j.log.Warn("download failed; partial data removed", "code", fe.Code, "retryable", fe.Retryable, "err", fe.Message)
	}
}

// pruneLoop forgets finished jobs older than retention, hourly.
func (s *Server) pruneLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		s.prune(time.Now().Add(-retention))
		select {
		case <-tick.C:
		case <-s.base.Done():
			return
		}
	}
}

func (s *Server) prune(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, j := range s.jobs {
		r := j.record()
		if agentclient.FinishedState(r.State) && r.FinishedAt != nil && r.FinishedAt.Before(before) {
			delete(s.jobs, id)
			if err := j.pool.removeJobFiles(id, j.node(), false); err != nil {
				j.log.Warn("prune download record", "err", err)
			}
		}
	}
}

// queuedLocked counts the jobs waiting for a slot. Called with s.mu held.
func (s *Server) queuedLocked() int {
	n := 0
	for _, j := range s.jobs {
		if j.state() == agentclient.StateQueued {
			n++
		}
	}
	return n
}

// counts returns how many jobs are queued and running (verifying and
// converting count as running).
func (s *Server) counts() (queued, running int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		switch j.state() {
		case agentclient.StateQueued, agentclient.StateWaitingCredential:
			queued++
		case agentclient.StateRunning, agentclient.StateVerifying, agentclient.StateConverting:
			running++
		}
	}
	return queued, running
}

// pausedCount counts the paused jobs.
func (s *Server) pausedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		if j.state() == agentclient.StatePaused {
			n++
		}
	}
	return n
}

// list returns every job, newest first.
func (s *Server) list() []agentclient.Download {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	out := make([]agentclient.Download, 0, len(jobs))
	created := map[string]time.Time{}
	for _, j := range jobs {
		d := j.snapshot()
		created[d.ID] = j.record().CreatedAt
		out = append(out, d)
	}
	sort.Slice(out, func(a, b int) bool { return created[out[a].ID].After(created[out[b].ID]) })
	return out
}
