package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/source"
)

// maxRequestBody bounds a POST body: a download request is a few hundred bytes.
const maxRequestBody = 64 << 10

// cancelWait is how long DELETE waits for a running transfer to stop and
// its partial data to be removed before answering.
const cancelWait = 10 * time.Second

// routes is the agent's API. Every route, /metrics included, needs the
// bearer token: the contract says so, and the agent listens on the
// hypervisor's network, where nothing should learn what it downloads
// unasked. Scrapers send the token (Prometheus: authorization.credentials).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.handleHealth)
	mux.HandleFunc("GET /v1/downloads", s.handleList)
	mux.HandleFunc("POST /v1/downloads", s.handleStart)
	mux.HandleFunc("GET /v1/downloads/{id}", s.handleGet)
	mux.HandleFunc("DELETE /v1/downloads/{id}", s.handleCancel)
	mux.HandleFunc("POST /v1/downloads/{id}/pause", s.handlePause)
	mux.HandleFunc("DELETE /v1/pools/{pool_id}/files/{file_name}", s.handleDeleteFile)
	mux.HandleFunc("GET /v1/pools/{pool_id}/files/{file_name}", s.handleServeFile) // and HEAD
	mux.HandleFunc("PUT /v1/pools/{pool_id}/links/{name}", s.handleLink)
	mux.HandleFunc("PUT /v1/uploads/{id}", s.handleStartUpload)
	mux.HandleFunc("GET /v1/uploads/{id}", s.handleGetUpload)
	mux.HandleFunc("PATCH /v1/uploads/{id}", s.handlePatchUpload)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.handleNoRoute(mux, w, r) })
	return s.auth(s.count(mux))
}

// count counts each request by the route the mux matched (r.Pattern,
// which it sets on the request it is given).
func (s *Server) count(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "other"
		}
		s.metrics.requests.WithLabelValues(route).Inc()
	})
}

// auth lets through only requests that carry the node's own credential,
// or a token scoped to this request's method and path minted from it (see
// package nodeauth). The credential is compared in constant time. A token
// scoped to GET also opens HEAD of the same path: HEAD tells less.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		if err := s.verifier.Check(nodeauth.Bearer(r.Header.Get("Authorization")), method, r.URL.EscapedPath()); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloudimages-nodeagent"`)
			writeError(w, fault.New(fault.Unauthorized, "%v: send Authorization: Bearer with this node's credential (its --node-token, printed by 'cloudimages node-token --node-id ID' from the cluster secret the worker holds) or a token the worker scoped to this request", err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleNoRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodPatch} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			writeError(w, fault.New(fault.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
	}
	writeError(w, fault.New(fault.NotFound, "no route %s %s", r.Method, r.URL.Path))
}

// features is what this agent tells callers it supports, in /v1/health.
var features = []string{
	agentclient.FeatureMaxImageSize,
	agentclient.FeatureMinFree,
	agentclient.FeatureNoReplacePublish,
	agentclient.FeatureRehashTakeover,
	agentclient.FeatureStrongValidatorResume,
	agentclient.FeatureBoundedQueue,
	agentclient.FeatureDecompress,
	agentclient.FeaturePause,
	agentclient.FeatureMirrors,
	agentclient.FeatureSourceCredentials,
	agentclient.FeatureBandwidthLimit,
	agentclient.FeatureLink,
	agentclient.FeatureUpload,
	agentclient.FeaturePeerCopy,
	agentclient.FeatureLongPoll,
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := agentclient.Health{NodeID: s.cfg.NodeID, Version: s.cfg.Version, Features: features, Pools: []agentclient.PoolHealth{}}
	h.QemuImg = &agentclient.QemuImg{Path: s.qemuImg, Missing: s.noQemuImg}
	if s.qemuImg != "" {
		h.Features = append(append([]string(nil), features...), agentclient.FeatureConvert)
	}
	for _, p := range s.order {
		ph := agentclient.PoolHealth{ID: p.id, Path: p.dir}
		if free, total, err := p.space(); err == nil {
			ph.FreeBytes, ph.TotalBytes = free, total
		} else {
			s.log.Warn("statfs pool", "pool_id", p.id, "err", err)
		}
		h.Pools = append(h.Pools, ph)
	}
	queued, running := s.counts()
	h.ActiveDownloads = queued + running
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]agentclient.Download{"items": s.list()})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	lp, err := parseLongPoll(r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	j, ok := s.job(id)
	if ok {
		j, ok = s.await(r.Context(), id, j, lp)
	}
	if !ok {
		writeError(w, fault.New(fault.NotFound, "no download %q on node %s", id, s.cfg.NodeID))
		return
	}
	writeJSON(w, http.StatusOK, j.snapshot())
}

// replaceLocked puts j in the table under id; long-polls waiting on the
// job it replaces answer with j. Called with s.mu held.
func (s *Server) replaceLocked(id string, j *job) {
	old, ok := s.jobs[id]
	s.jobs[id] = j
	if ok && old != j {
		old.wake()
	}
}

func (s *Server) job(id string) (*job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	return j, ok
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) {
	req, err := decodeRequest(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.validate(&req); err != nil {
		writeError(w, err)
		return
	}
	d, status, err := s.start(req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, d)
}

// decodeRequest reads an agentclient.DownloadRequest, strictly: unknown fields and
// trailing data are mistakes worth hearing about.
func decodeRequest(body io.Reader) (agentclient.DownloadRequest, error) {
	var req agentclient.DownloadRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, fault.New(fault.PayloadTooLarge, "request body is larger than %d bytes", maxRequestBody)
		}
		return req, fault.New(fault.InvalidRequest, "request body is not a download request: %v", err)
	}
	if dec.More() {
		return req, fault.New(fault.InvalidRequest, "request body has data after the JSON object")
	}
	return req, nil
}

// ValidateRequest checks a download request as the agent does before it
// accepts one, apart from which pools exist: names, and the source
// package's URL policy (with allowPrivate as --allow-private-networks),
// checksum, size and format rules. It
// normalises the checksum to lower case.
func ValidateRequest(req *agentclient.DownloadRequest, allowPrivate bool) error {
	if req.ID == "" {
		return fault.New(fault.InvalidRequest, "id is required: the download's id (the image id)")
	}
	if err := catalog.ValidName(req.ID); err != nil {
		return fault.New(fault.InvalidRequest, "id: %v", err)
	}
	switch {
	case req.URL == "" && req.Peer == nil:
		return fault.New(fault.InvalidRequest, "url is required: the mirror to download from (or peer: another agent's published file)")
	case req.URL != "" && req.Peer != nil:
		return fault.New(fault.InvalidRequest, "give url or peer, not both: a download has one source")
	case req.Peer != nil:
		if err := checkPeer(req); err != nil {
			return err
		}
	default:
		if _, err := source.CheckURL(req.URL, allowPrivate); err != nil {
			return err
		}
		if err := checkMirrors(req, allowPrivate); err != nil {
			return err
		}
	}
	if req.PoolID == "" {
		return fault.New(fault.InvalidRequest, "pool_id is required")
	}
	if req.FileName == "" {
		return fault.New(fault.InvalidRequest, "file_name is required: the name the image is published under in the pool")
	}
	if err := catalog.ValidName(req.FileName); err != nil {
		return fault.New(fault.InvalidRequest, "file_name: %v", err)
	}
	sum, err := source.ParseChecksum(req.Checksum)
	if err != nil {
		return err
	}
	req.Checksum = sum
	if err := source.CheckSize(req.SizeBytes); err != nil {
		return err
	}
	if err := checkConvertTo(req.ConvertTo); err != nil {
		return err
	}
	if err := source.CheckMaxBytesPerSecond(req.MaxBytesPerSecond); err != nil {
		return err
	}
	return source.CheckFormat(req.Format)
}

func (s *Server) validate(req *agentclient.DownloadRequest) error {
	if err := ValidateRequest(req, s.cfg.AllowPrivateNetworks); err != nil {
		return err
	}
	if _, ok := s.pools[req.PoolID]; !ok {
		ids := make([]string, 0, len(s.order))
		for _, p := range s.order {
			ids = append(ids, p.id)
		}
		return fault.New(fault.PoolNotFound, "node %s serves no pool %q; it serves %s", s.cfg.NodeID, req.PoolID, strings.Join(ids, ", "))
	}
	if req.ConvertTo != "" && s.qemuImg == "" {
		return s.noConverter(req.ConvertTo)
	}
	return nil
}

// start creates the job for a request, or finds it: 202 for a new (or
// restarted) job, 200 for the same request again, 409 for another
// request under the same id or another job writing the same file.
func (s *Server) start(req agentclient.DownloadRequest) (agentclient.Download, int, error) {
	p := s.pools[req.PoolID]
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[req.ID]; ok {
		if !j.request().Same(req) {
			return agentclient.Download{}, 0, fault.New(fault.Conflict, "download %s already exists with another request (%s into %s/%s): use a new id", req.ID, redact(j.request().URL), j.request().PoolID, j.request().FileName)
		}
		j.supply(req.Credential) // a job that waits for it after a restart goes on
		j.supplyPeer(req.Peer)   // and a peer copy takes the source named now
		switch {
		case j.state() == agentclient.StateCompleted && !j.fileIntact():
			j.log.Info("published file is gone; downloading it again")
		case !j.restartable():
			return j.snapshot(), http.StatusOK, nil
		default:
			j.log.Info("download requested again after it ended; starting it again", "state", j.state())
		}
	}
	for _, other := range s.jobs {
		o := other.request()
		if o.ID != req.ID && o.PoolID == req.PoolID && o.FileName == req.FileName && !agentclient.FinishedState(other.state()) {
			return agentclient.Download{}, 0, fault.New(fault.Conflict, "download %s is already writing %s in pool %s: wait for it or cancel it", o.ID, req.FileName, req.PoolID)
		}
	}
	if queued := s.queuedLocked(); queued >= s.cfg.MaxQueued {
		return agentclient.Download{}, 0, fault.Retryable(fault.NodeUnreachable, "node %s already has %d downloads waiting (--max-queued %d): try again later or on another node", s.cfg.NodeID, queued, s.cfg.MaxQueued)
	}
	if req.SizeBytes > s.cfg.MaxImageSize {
		return agentclient.Download{}, 0, tooLarge(req.SizeBytes, s.cfg.MaxImageSize)
	}
	if req.SizeBytes > 0 {
		if room, err := p.room(s.minFree); err == nil && req.SizeBytes > room {
			return agentclient.Download{}, 0, s.noRoom(p, room, req.SizeBytes)
		}
	}
	j := newJob(p, s.adopt(p, req), s.log)
	j.supply(req.Credential)
	j.supplyPeer(req.Peer)
	if agentclient.FinishedState(j.state()) {
		s.replaceLocked(req.ID, j)
		return j.snapshot(), http.StatusAccepted, nil
	}
	if _, err := p.root.Lstat(req.FileName); err == nil {
		return agentclient.Download{}, 0, s.takenLocked(p, req)
	}
	s.replaceLocked(req.ID, j)
	j.claim()
	s.launch(j)
	return j.snapshot(), http.StatusAccepted, nil
}

// taken is the error for a published name that is already in the pool:
// a file is never replaced, whoever made it (a VM may be using it).
func (s *Server) taken(p *pool, req agentclient.DownloadRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takenLocked(p, req)
}

func (s *Server) takenLocked(p *pool, req agentclient.DownloadRequest) error {
	owner := "no download of this node"
	for _, j := range s.jobs {
		if o := j.request(); o.ID != req.ID && o.PoolID == p.id && o.FileName == req.FileName {
			owner = "download " + o.ID
		}
	}
	return fault.New(fault.Conflict, "pool %s already has %s (from %s) and it is never replaced: delete it first (DELETE /v1/pools/%s/files/%s) or publish under another file name", p.id, p.path(req.FileName), owner, p.id, req.FileName)
}

// adopt returns the record to start a job from: on a shared pool another
// node may have left this very download half done (it failed over to us)
// or even published; its record and partial data are taken over. Anything
// else under this id is stale and removed. Called with s.mu held.
func (s *Server) adopt(p *pool, req agentclient.DownloadRequest) record {
	old, err := p.loadRecord(req.ID)
	if err == nil && old.Request.Same(req) {
		switch {
		case !agentclient.FinishedState(old.State):
			if old.NodeID != s.cfg.NodeID {
				old.TakenFrom = old.NodeID
			}
			old.State, old.NodeID, old.Request = agentclient.StateQueued, s.cfg.NodeID, req.Redacted()
			s.log.Info("taking over a partial download left in the pool", "download_id", req.ID, "pool_id", p.id, "bytes_done", old.BytesDone)
			return *old
		case old.State == agentclient.StateFailed && old.Request.Peer != nil && len(old.HashState) > 0 && old.NodeID == s.cfg.NodeID:
			// A peer copy whose source failed kept its partial data: the
			// next try, from whichever source, resumes it.
			old.State, old.Error, old.FinishedAt, old.Request = agentclient.StateQueued, nil, nil, req.Redacted()
			s.log.Info("resuming a peer copy from the partial data its last source left", "download_id", req.ID, "pool_id", p.id, "bytes_done", old.BytesDone)
			return *old
		case old.State == agentclient.StateCompleted:
			if fi, err := p.root.Lstat(req.FileName); err == nil && fi.Mode().IsRegular() && fi.Size() == old.publishedSize() {
				old.NodeID, old.Request = s.cfg.NodeID, req.Redacted()
				return *old
			}
		}
	}
	stale := s.cfg.NodeID
	if err == nil {
		stale = old.NodeID
	}
	if err := p.removeJobFiles(req.ID, stale, false); err != nil {
		s.log.Warn("remove stale download files", "download_id", req.ID, "pool_id", p.id, "err", err)
	}
	return newRecord(req.Redacted(), s.cfg.NodeID)
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, ok := s.job(id)
	if !ok {
		if s.removeForeign(id) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeError(w, fault.New(fault.NotFound, "no download %q on node %s", id, s.cfg.NodeID))
		return
	}
	if j.keptPartial() {
		s.dropKept(j)
	}
	if agentclient.FinishedState(j.state()) || s.cancelPaused(id) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	j.cancel(errCancelled)
	select {
	case <-j.done:
		w.WriteHeader(http.StatusNoContent)
	case <-time.After(cancelWait):
		writeError(w, fault.Retryable(fault.Internal, "download %s did not stop within %s; try again", id, cancelWait))
	}
}

// dropKept removes the partial data a failed peer copy kept: a cancel
// means no try will resume it.
func (s *Server) dropKept(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !j.keptPartial() {
		return
	}
	if err := j.pool.removeJobFiles(j.request().ID, j.node(), true); err != nil {
		j.log.Error("remove partial data", "err", err)
	}
	j.update(func(r *record) { r.HashState = nil })
	j.save()
	j.log.Info("failed peer copy cancelled; its kept partial data removed")
}

// cancelPaused cancels a paused job: its transfer has already stopped, so
// only its partial data is left to remove. It reports false when the job
// is not paused (any more: a start may have resumed it meanwhile).
func (s *Server) cancelPaused(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok || j.state() != agentclient.StatePaused {
		return false
	}
	<-j.done // the paused goroutine has recorded the pause; it ends at once
	if err := j.pool.removeJobFiles(id, j.node(), true); err != nil {
		j.log.Error("remove partial data", "err", err)
	}
	j.finish(agentclient.StateCancelled, fault.New(fault.Cancelled, "download cancelled"))
	j.save()
	j.log.Info("paused download cancelled; partial data removed")
	return true
}

// handlePause stops a download and keeps its partial data and checkpoint
// (state paused); the same request started again resumes from them. It
// answers 200 with the job as the pause left it — completed, when it
// published in the meantime — and conflict for a job that already ended.
func (s *Server) handlePause(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, ok := s.job(id)
	if !ok {
		writeError(w, fault.New(fault.NotFound, "no download %q on node %s", id, s.cfg.NodeID))
		return
	}
	switch st := j.state(); {
	case st == agentclient.StatePaused:
		writeJSON(w, http.StatusOK, j.snapshot())
		return
	case agentclient.FinishedState(st):
		writeError(w, fault.New(fault.Conflict, "download %s is %s: there is nothing to pause", id, st))
		return
	}
	j.cancel(errPaused)
	select {
	case <-j.done:
		writeJSON(w, http.StatusOK, j.snapshot())
	case <-time.After(cancelWait):
		writeError(w, fault.Retryable(fault.Internal, "download %s did not stop within %s; try again", id, cancelWait))
	}
}

// removeForeign removes what another node left under id in a shared pool
// (it started the download, then this node was asked to cancel it).
func (s *Server) removeForeign(id string) bool {
	if catalog.ValidName(id) != nil {
		return false
	}
	found := false
	for _, p := range s.order {
		rec, err := p.loadRecord(id)
		if err != nil || agentclient.FinishedState(rec.State) {
			continue
		}
		found = true
		if err := p.removeJobFiles(id, rec.NodeID, false); err != nil {
			s.log.Warn("remove partial data", "download_id", id, "pool_id", p.id, "err", err)
		}
	}
	return found
}

func (s *Server) handleDeleteFile(w http.ResponseWriter, r *http.Request) {
	poolID, name := r.PathValue("pool_id"), r.PathValue("file_name")
	p, ok := s.pools[poolID]
	if !ok {
		writeError(w, fault.New(fault.PoolNotFound, "node %s serves no pool %q", s.cfg.NodeID, poolID))
		return
	}
	if err := catalog.ValidName(name); err != nil {
		writeError(w, fault.New(fault.InvalidRequest, "file name: %v", err))
		return
	}
	s.mu.Lock()
	for _, j := range s.jobs {
		if req := j.request(); req.PoolID == poolID && req.FileName == name && !agentclient.FinishedState(j.state()) {
			s.mu.Unlock()
			writeError(w, fault.New(fault.Conflict, "download %s is writing %s: cancel it first", req.ID, name))
			return
		}
	}
	s.mu.Unlock()
	fi, err := p.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		writeError(w, fault.New(fault.NotFound, "no file %s in pool %s", name, poolID))
		return
	case err != nil:
		writeError(w, fault.New(fault.Internal, "pool %s: %v", poolID, err))
		return
	case fi.IsDir():
		writeError(w, fault.New(fault.InvalidRequest, "%s in pool %s is a directory, not an image", name, poolID))
		return
	}
	// Remove never follows a symlink: a link planted in the pool goes, its target stays.
	if err := p.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		writeError(w, fault.New(fault.Internal, "remove %s: %v", p.path(name), err))
		return
	}
	if err := p.syncDir(); err != nil {
		s.log.Warn("sync images folder", "pool_id", poolID, "err", err)
	}
	s.forgetPublished(p, name)
	s.log.Info("image file removed", "pool_id", poolID, "file_name", name)
	w.WriteHeader(http.StatusNoContent)
}

// forgetPublished forgets the completed jobs that published a file now
// removed, so that no one is told "completed" for a file that is gone.
func (s *Server) forgetPublished(p *pool, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, j := range s.jobs {
		if req := j.request(); req.PoolID == p.id && req.FileName == name && j.state() == agentclient.StateCompleted {
			delete(s.jobs, id)
			if err := p.removeJobFiles(id, j.node(), false); err != nil {
				j.log.Warn("remove download record", "err", err)
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	fe := fault.From(err)
	writeJSON(w, fault.HTTPStatus(fe.Code), fault.Body{Error: fe})
}

// maxMirrors bounds a request's mirror list.
const maxMirrors = 16

// checkMirrors judges a request's mirror list like its URL, and its
// credential: one that can be sent, to the host of one of its URLs.
func checkMirrors(req *agentclient.DownloadRequest, allowPrivate bool) error {
	if len(req.Mirrors) > maxMirrors {
		return fault.New(fault.InvalidRequest, "%d mirrors: give at most %d", len(req.Mirrors), maxMirrors)
	}
	for i, m := range req.Mirrors {
		if m == "" {
			return fault.New(fault.InvalidRequest, "mirrors[%d] is empty", i)
		}
		if _, err := source.CheckURL(m, allowPrivate); err != nil {
			fe := fault.From(err)
			return &fault.Error{Code: fe.Code, Message: fmt.Sprintf("mirrors[%d]: %s", i, fe.Message), Retryable: fe.Retryable}
		}
	}
	c := req.Credential
	if c == nil {
		return nil
	}
	if err := c.Check(); err != nil {
		return fault.New(fault.InvalidRequest, "%v", err)
	}
	for _, raw := range req.URLs() {
		if u, err := url.Parse(raw); err == nil && c.For(u) {
			return nil
		}
	}
	return fault.New(fault.InvalidRequest, "credential %q is for host %s, which none of the download's URLs is on", c.Name, c.Host)
}
