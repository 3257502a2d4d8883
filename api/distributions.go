package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// maxMaxParallel bounds max_parallel: more copies than this reading from one
// node at once would only share its disk and link more thinly.
const maxMaxParallel = 64

// distributionRequest is the body of POST /v1/distributions.
type distributionRequest struct {
	CatalogID   string   `json:"catalog_id"`
	ImageID     string   `json:"image_id"`
	URL         string   `json:"url"`
	Checksum    string   `json:"checksum"`
	Name        string   `json:"name"`
	PoolIDs     []string `json:"pool_ids"`
	AllPools    bool     `json:"all_pools"`
	MaxParallel *int     `json:"max_parallel"`
}

// Distribution is a Distribution as the contract shows it.
type Distribution struct {
	ID     string             `json:"id"`
	Status string             `json:"status"`
	Source DistributionSource `json:"source"`
	// Checksum is the request's, or, for a catalog entry that names a
	// checksum file, the one the first copy resolved.
	Checksum    string             `json:"checksum"`
	PoolIDs     []string           `json:"pool_ids"`
	AllPools    bool               `json:"all_pools"`
	MaxParallel int                `json:"max_parallel"`
	Copies      []DistributionCopy `json:"copies"`
	MirrorBytes int64              `json:"mirror_bytes"`
	// FailedPools are the pools whose copy failed (a PARTIAL or FAILED
	// distribution); Message says how it ended when not READY.
	FailedPools []string  `json:"failed_pools"`
	Message     string    `json:"message,omitempty"`
	WorkflowID  string    `json:"workflow_id"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// DistributionSource is the request's source: a catalog entry, a URL
// with its name and checksum, or a READY image (an upload, say) whose file
// is copied, with its name and file checksum.
type DistributionSource struct {
	CatalogID string `json:"catalog_id,omitempty"`
	ImageID   string `json:"image_id,omitempty"`
	URL       string `json:"url,omitempty"`
	Name      string `json:"name,omitempty"`
	Checksum  string `json:"checksum,omitempty"`
}

// DistributionCopy is one pool's copy: its image, status (the image's while
// it moves), where its bytes came from ("mirror" or "node:NODE_ID") and its
// live progress.
type DistributionCopy struct {
	PoolID          string             `json:"pool_id"`
	ImageID         string             `json:"image_id"`
	Status          string             `json:"status"`
	Source          string             `json:"source"`
	Adopted         bool               `json:"adopted"`
	BytesFromMirror int64              `json:"bytes_from_mirror"`
	BytesFromPeers  int64              `json:"bytes_from_peers"`
	NodeID          string             `json:"node_id,omitempty"`
	Progress        *contract.Progress `json:"progress,omitempty"`
	Error           *ErrorDetail       `json:"error"`
}

func (s *Server) createDistribution(c echo.Context) error {
	ctx := c.Request().Context()
	var req distributionRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	d, err := s.checkDistribution(c, &req)
	if err != nil {
		return err
	}
	got, created, err := s.store.CreateDistribution(ctx, d)
	if err != nil {
		return err
	}
	if !created {
		return s.answerExistingDistribution(c, got)
	}
	if err := s.startDistribution(ctx, got, false); err != nil {
		if derr := s.store.EndDistribution(context.WithoutCancel(ctx), got.ID, store.DistributionCancelled, "its workflow could not be started"); derr != nil {
			s.log.Error("give up a distribution whose workflow did not start", "distribution_id", got.ID, "error", derr)
		}
		return err
	}
	s.log.Info("distribution started", "distribution_id", got.ID, "source", got.SourceKey, "pools", got.PoolKey, "max_parallel", got.MaxParallel)
	return c.JSON(http.StatusAccepted, s.viewDistribution(ctx, got))
}

// answerExistingDistribution answers 200 with the distribution of the same
// source and pool set. A PARTIAL or FAILED one is retried first: its
// workflow runs again and copies the pools that failed. A RUNNING one has
// its workflow started again, a no-op while it runs, which heals a start
// lost to a crash.
func (s *Server) answerExistingDistribution(c echo.Context, d store.Distribution) error {
	ctx := c.Request().Context()
	retry := d.Status == store.DistributionPartial || d.Status == store.DistributionFailed
	won := false
	if retry {
		ok, err := s.store.RetryDistribution(ctx, d.ID)
		if err != nil {
			return err
		}
		if ok {
			won = true
			s.log.Info("distribution retried", "distribution_id", d.ID, "status_was", d.Status)
		}
		d.Status = store.DistributionRunning
	}
	if d.Status == store.DistributionRunning {
		// The retry that won replaces the run that recorded PARTIAL (it may
		// not have closed yet: recording its end is its last step); the
		// others join the run that is there.
		if err := s.startDistribution(ctx, d, won); err != nil {
			if won {
				if rerr := s.store.EndDistribution(context.WithoutCancel(ctx), d.ID, store.DistributionPartial, d.ErrorMessage); rerr != nil {
					s.log.Error("put back a distribution whose retry did not start", "distribution_id", d.ID, "error", rerr)
				}
			}
			return err
		}
	}
	fresh, err := s.store.Distribution(ctx, d.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewDistribution(ctx, fresh))
}

// checkDistribution validates a request and returns the distribution it
// asks for, not yet stored. The source package judges the source, as it
// does for an image.
func (s *Server) checkDistribution(c echo.Context, req *distributionRequest) (*store.Distribution, error) {
	if req.ImageID != "" {
		return s.checkImageDistribution(c, req)
	}
	if req.CatalogID == "" && req.URL == "" {
		return nil, apiErr(fault.InvalidRequest, "give catalog_id (GET /v1/catalog lists them), url with checksum and name, or image_id (a READY image, e.g. an upload)")
	}
	if req.URL != "" && req.Checksum == "" {
		return nil, apiErr(fault.InvalidRequest, "checksum is missing: a distribution verifies every copy, so give the url's checksum (\"sha256:HEX\")")
	}
	src, err := source.Resolve(s.catalog, source.Request{CatalogID: req.CatalogID, URL: req.URL, Name: req.Name,
		Checksum: req.Checksum, PoolID: "-"})
	if err != nil {
		return nil, err
	}
	maxParallel, poolKey, err := s.checkDistributionTargets(c, req)
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	return &store.Distribution{ID: id, Status: store.DistributionRunning, SourceKey: src.SourceKey, PoolKey: poolKey,
		CatalogID: src.CatalogID, URL: req.URL, Name: src.Name, Checksum: src.Checksum, PoolIDs: req.PoolIDs,
		AllPools: req.AllPools, MaxParallel: maxParallel, WorkflowID: contract.DistributionWorkflowID(id)}, nil
}

// checkImageDistribution checks a distribution of an image already in a
// pool (an upload, in a cluster without a mirror): the image must be
// READY, with the checksum of its file known, which every copy is
// verified against. Its source key is the image's: the same image into
// the same pools is the same distribution.
func (s *Server) checkImageDistribution(c echo.Context, req *distributionRequest) (*store.Distribution, error) {
	switch {
	case req.CatalogID != "" || req.URL != "":
		return nil, apiErr(fault.InvalidRequest, "give one source: image_id, catalog_id, or url with checksum and name — not image_id with another")
	case req.Name != "" || req.Checksum != "":
		return nil, apiErr(fault.InvalidRequest, "image_id names the image, its name and its checksum: leave out name and checksum")
	}
	if err := checkID("image_id", req.ImageID); err != nil {
		return nil, err
	}
	img, err := s.image(c.Request().Context(), req.ImageID)
	if err != nil {
		return nil, err
	}
	if img.Status != store.StatusReady {
		return nil, apiErr(fault.Conflict, "image %q is %s: only a READY image can be distributed; wait for it to be READY (cloudimages images wait %s), then post the distribution again",
			img.ID, img.Status, img.ID)
	}
	if img.FileChecksum == "" || img.NodeID == "" {
		return nil, apiErr(fault.UnprocessableRequest, "image %q has no recorded file checksum or node (its agent is older than distributions): copies could not be verified; upgrade the agents and download or upload it again", img.ID)
	}
	maxParallel, poolKey, err := s.checkDistributionTargets(c, req)
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	return &store.Distribution{ID: id, Status: store.DistributionRunning, SourceKey: store.ImageSourceKey(img.ID), PoolKey: poolKey,
		SourceImageID: img.ID, Name: img.Name, Checksum: img.FileChecksum, PoolIDs: req.PoolIDs,
		AllPools: req.AllPools, MaxParallel: maxParallel, WorkflowID: contract.DistributionWorkflowID(id)}, nil
}

// checkDistributionTargets checks max_parallel and the pools.
func (s *Server) checkDistributionTargets(c echo.Context, req *distributionRequest) (maxParallel int, poolKey string, err error) {
	maxParallel = contract.DefaultMaxParallel
	if req.MaxParallel != nil {
		maxParallel = *req.MaxParallel
	}
	if maxParallel < 1 || maxParallel > maxMaxParallel {
		return 0, "", apiErr(fault.InvalidRequest, "max_parallel is %d: give how many copies may read from one node at once, from 1 to %d", maxParallel, maxMaxParallel)
	}
	poolKey, err = s.checkDistributionPools(c, req)
	return maxParallel, poolKey, err
}

// checkDistributionPools checks pool_ids or all_pools and returns the pool
// key: the sorted pool ids, so that the same set in another order is the
// same distribution, or store.AllPoolsKey.
func (s *Server) checkDistributionPools(c echo.Context, req *distributionRequest) (string, error) {
	switch {
	case req.AllPools && len(req.PoolIDs) > 0:
		return "", apiErr(fault.InvalidRequest, "give pool_ids or all_pools, not both")
	case req.AllPools:
		pools, err := s.store.Pools(c.Request().Context())
		if err != nil {
			return "", err
		}
		if len(pools) == 0 {
			return "", apiErr(fault.UnprocessableRequest, "all_pools: there are no pools yet; create them first (POST /v1/pools)")
		}
		return store.AllPoolsKey, nil
	case len(req.PoolIDs) == 0:
		return "", apiErr(fault.InvalidRequest, "pool_ids is missing: name the pools to put the image into (GET /v1/pools lists them), or say \"all_pools\": true")
	}
	for i, id := range req.PoolIDs {
		if err := checkID("pool_ids", id); err != nil {
			return "", err
		}
		if slices.Contains(req.PoolIDs[:i], id) {
			return "", apiErr(fault.InvalidRequest, "pool_ids names pool %q twice", id)
		}
		if _, err := s.pool(c, id); err != nil {
			return "", err
		}
	}
	return poolKey(req.PoolIDs), nil
}

// maxPoolKey is the longest pool key kept as it is: a longer one (hundreds
// of pools) is kept as its sha256, so that the unique index's rows stay
// well under PostgreSQL's limit on an index entry.
const maxPoolKey = 256

// poolKey is the sorted pool ids, joined, or their sha256 when long: the
// same set in any order is the same key.
func poolKey(ids []string) string {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	key := strings.Join(sorted, ",")
	if len(key) <= maxPoolKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// startDistribution starts the distribution's workflow, or finds the one
// that runs (USE_EXISTING); a distribution retried after its workflow
// closed gets a new run under the same id. replace ends a run still there
// (one that has recorded its end and not yet closed) and starts anew.
func (s *Server) startDistribution(ctx context.Context, d store.Distribution, replace bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	policy := enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING
	if replace {
		policy = enums.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING
	}
	opts := client.StartWorkflowOptions{
		ID:                       contract.DistributionWorkflowID(d.ID),
		TaskQueue:                contract.TaskQueue,
		WorkflowIDConflictPolicy: policy,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes:    temporal.NewSearchAttributes(contract.DistributionIDKey.ValueSet(d.ID)),
		StaticSummary:            fmt.Sprintf("distribute %s into %s", distributionSourceName(d), distributionPoolsName(d)),
	}
	in := contract.DistributeInput{DistributionID: d.ID, MaxParallel: d.MaxParallel}
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, contract.DistributeWorkflowType, in)
	if isUndefinedSearchAttribute(err) {
		s.log.Warn("search attributes are not registered in Temporal yet; starting without them (start a worker to register them)",
			"distribution_id", d.ID, "error", err)
		opts.TypedSearchAttributes = temporal.SearchAttributes{}
		_, err = s.temporal.ExecuteWorkflow(ctx, opts, contract.DistributeWorkflowType, in)
	}
	if err != nil {
		return s.temporalError("start the distribution workflow", err)
	}
	return nil
}

func distributionSourceName(d store.Distribution) string {
	switch {
	case d.CatalogID != "":
		return d.CatalogID
	case d.SourceImageID != "":
		return fmt.Sprintf("image %s (%s)", d.SourceImageID, d.Name)
	}
	return d.Name
}

func distributionPoolsName(d store.Distribution) string {
	if d.AllPools {
		return "all pools"
	}
	return "pools " + strings.Join(d.PoolIDs, ", ")
}

func (s *Server) listDistributions(c echo.Context) error {
	ctx := c.Request().Context()
	ds, err := s.store.Distributions(ctx)
	if err != nil {
		return err
	}
	out := make([]Distribution, 0, len(ds))
	for _, d := range ds {
		out = append(out, s.viewDistribution(ctx, d))
	}
	return c.JSON(http.StatusOK, listOf(out))
}

func (s *Server) getDistribution(c echo.Context) error {
	d, err := s.distribution(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewDistribution(c.Request().Context(), d))
}

func (s *Server) distribution(ctx context.Context, id string) (store.Distribution, error) {
	d, err := s.store.Distribution(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return d, apiErr(fault.NotFound, "distribution %q does not exist: GET /v1/distributions lists them", id)
	}
	return d, err
}

// deleteDistribution cancels a RUNNING distribution: its workflow cancels
// the copies in flight and keeps the finished ones (202). An ended one is
// forgotten (204); its images stay.
func (s *Server) deleteDistribution(c echo.Context) error {
	ctx := c.Request().Context()
	d, err := s.distribution(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if d.Terminal() {
		if err := s.store.DeleteDistribution(ctx, d.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.log.Info("distribution forgotten", "distribution_id", d.ID, "status", d.Status)
		return c.NoContent(http.StatusNoContent)
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	err = s.temporal.CancelWorkflow(cctx, contract.DistributionWorkflowID(d.ID), "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		// No workflow runs (its start was lost): nothing is in flight.
		if err := s.store.EndDistribution(ctx, d.ID, store.DistributionCancelled, "cancelled"); err != nil {
			return err
		}
		d.Status = store.DistributionCancelled
	case err != nil:
		return s.temporalError("cancel the distribution workflow", err)
	}
	s.log.Info("distribution cancel requested", "distribution_id", d.ID)
	return c.JSON(http.StatusAccepted, s.viewDistribution(ctx, d))
}

// viewDistribution shows a distribution with each copy's live status and
// progress, read from its image.
func (s *Server) viewDistribution(ctx context.Context, d store.Distribution) Distribution {
	pools := []string(d.PoolIDs)
	if pools == nil {
		pools = []string{}
	}
	v := Distribution{ID: d.ID, Status: d.Status, Checksum: d.Checksum, PoolIDs: pools, AllPools: d.AllPools,
		MaxParallel: d.MaxParallel, Copies: make([]DistributionCopy, 0, len(d.Copies)), MirrorBytes: d.MirrorBytes(),
		FailedPools: []string{}, Message: d.ErrorMessage, WorkflowID: d.WorkflowID, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		Source: DistributionSource{CatalogID: d.CatalogID}}
	switch {
	case d.SourceImageID != "":
		v.Source = DistributionSource{ImageID: d.SourceImageID, Name: d.Name, Checksum: d.Checksum}
	case d.CatalogID == "":
		v.Source = DistributionSource{URL: d.URL, Name: d.Name, Checksum: d.Checksum}
	}
	for _, cp := range d.Copies {
		vc := DistributionCopy{PoolID: cp.PoolID, ImageID: cp.ImageID, Status: cp.Status, Source: cp.Source, Adopted: cp.Adopted,
			BytesFromMirror: cp.BytesFromMirror, BytesFromPeers: cp.BytesFromPeers}
		if cp.ErrorCode != "" {
			vc.Error = &ErrorDetail{Code: cp.ErrorCode, Message: cp.ErrorMessage}
		}
		if cp.ImageID != "" {
			if img, err := s.store.Image(ctx, cp.ImageID); err == nil {
				vc.NodeID = img.NodeID
				if !store.IsTerminal(cp.Status) {
					vc.Status = img.Status // live: the image's own
					p := viewImage(img).Progress
					vc.Progress = &p
				}
				if v.Checksum == "" && img.Status == store.StatusReady {
					v.Checksum = img.Checksum
				}
			}
		}
		if vc.Status == store.StatusFailed {
			v.FailedPools = append(v.FailedPools, cp.PoolID)
		}
		v.Copies = append(v.Copies, vc)
	}
	return v
}
