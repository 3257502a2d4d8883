package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// imageRequest is the body of POST /v1/images.
type imageRequest struct {
	CatalogID       string `json:"catalog_id"`
	URL             string `json:"url"`
	Name            string `json:"name"`
	Checksum        string `json:"checksum"`
	PoolID          string `json:"pool_id"`
	NodeID          string `json:"node_id"`
	AllowUnverified bool   `json:"allow_unverified"`
	// Format declares the disk format of a url's image (one of
	// diskimage.Formats); the node refuses bytes of another format.
	Format string `json:"format"`
	// Credential names a source credential defined on the worker
	// (--credentials) to send to the mirror's host.
	Credential string `json:"credential"`
	// MaxBytesPerSecond caps this download's rate on the node (0: none).
	MaxBytesPerSecond int64 `json:"max_bytes_per_second"`
}

// createImage starts a download, or answers with the live or READY image
// of the same source in the same pool: never a second download.
func (s *Server) createImage(c echo.Context) error {
	ctx := c.Request().Context()
	var req imageRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	img, err := s.checkImageRequest(&req)
	if err != nil {
		s.metrics.imageRequest("rejected")
		return err
	}
	pool, err := s.pool(c, req.PoolID)
	if err != nil {
		s.metrics.imageRequest("rejected")
		return err
	}
	img.FileName = source.FileNameIn(img.FileName, pool.ImageFormat)
	if existing, ok, err := s.existingImage(ctx, pool.ID, img); err != nil {
		return err
	} else if ok {
		return s.answerExisting(c, existing)
	}
	if err := s.checkNodes(ctx, pool, req.NodeID); err != nil {
		s.metrics.imageRequest("rejected")
		return err
	}
	got, created, err := s.store.CreateImage(ctx, img)
	switch {
	case errors.Is(err, store.ErrFileNameTaken):
		s.metrics.imageRequest("rejected")
		return apiErr(fault.Conflict, "%v: give this image another name (\"name\")", err)
	case errors.Is(err, store.ErrNotFound):
		if _, perr := s.pool(c, req.PoolID); perr != nil {
			return perr // deleted meanwhile
		}
		return err
	case err != nil:
		return err
	case !created:
		return s.answerExisting(c, got)
	}
	log := s.log.With("image_id", got.ID, "pool_id", got.PoolID)
	in := inputFor(got, req.NodeID, req.AllowUnverified)
	in.MaxBytesPerSecond = req.MaxBytesPerSecond
	if err := s.startDownload(ctx, got, in); err != nil {
		s.metrics.imageRequest("temporal_unavailable")
		s.dropUnstarted(got)
		return err
	}
	log.Info("download started", "source", got.SourceKey, "file_name", got.FileName, "workflow_id", got.WorkflowID)
	s.metrics.imageRequest("created")
	return c.JSON(http.StatusAccepted, viewImage(got))
}

// existingImage is the image a request is answered with instead of a new
// download: for a catalog entry its newest live or READY image in the
// pool, whichever build (a subscription keeps several); for a URL the
// live or READY image of that URL.
func (s *Server) existingImage(ctx context.Context, poolID string, img *store.Image) (store.Image, bool, error) {
	if img.CatalogID != "" {
		return s.store.NewestCatalogImage(ctx, poolID, img.CatalogID)
	}
	return s.store.LiveImage(ctx, poolID, img.SourceKey)
}

// answerExisting answers 200 with the image already there. For a live one
// it starts the workflow again, which is a no-op when it runs and heals an
// image whose start was lost (a crash between the insert and the start).
func (s *Server) answerExisting(c echo.Context, img store.Image) error {
	if !img.Terminal() {
		if err := s.startDownload(c.Request().Context(), img, inputFor(img, "", false)); err != nil {
			s.metrics.imageRequest("temporal_unavailable")
			return err
		}
	}
	s.metrics.imageRequest("existing")
	return c.JSON(http.StatusOK, viewImage(img))
}

// dropUnstarted removes the record of a download whose workflow could not
// be started, so no PENDING image waits for a workflow that does not
// exist. Should the start have reached Temporal after all, the workflow
// creates the record again itself.
func (s *Server) dropUnstarted(img store.Image) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TemporalTimeout)
	defer cancel()
	cur, err := s.store.Image(ctx, img.ID)
	if err != nil || cur.Status != store.StatusPending || cur.Attempt > 0 {
		return
	}
	if err := s.store.DeleteImage(ctx, img.ID); err != nil {
		s.log.Error("remove the record of an unstarted download", "image_id", img.ID, "error", err)
	}
}

// checkImageRequest validates the request and returns the image record it
// asks for, not yet stored. The source package judges the source, as the
// workflow and the agents do.
func (s *Server) checkImageRequest(req *imageRequest) (*store.Image, error) {
	if req.PoolID == "" {
		return nil, apiErr(fault.InvalidRequest, "pool_id is missing: say which storage pool the image goes to (GET /v1/pools lists them)")
	}
	if err := checkID("pool_id", req.PoolID); err != nil {
		return nil, err
	}
	if req.NodeID != "" {
		if err := checkID("node_id", req.NodeID); err != nil {
			return nil, err
		}
	}
	if err := source.CheckMaxBytesPerSecond(req.MaxBytesPerSecond); err != nil {
		return nil, err
	}
	src, err := source.Resolve(s.catalog, source.Request{CatalogID: req.CatalogID, URL: req.URL, Name: req.Name,
		Checksum: req.Checksum, PoolID: req.PoolID, Format: req.Format, AllowUnverified: req.AllowUnverified,
		Credential: req.Credential})
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	return &store.Image{ID: id, PoolID: req.PoolID, CatalogID: src.CatalogID, Name: src.Name, SizeBytes: src.SizeBytes,
		Checksum: src.Checksum, Unverified: src.CatalogID == "" && src.Checksum == "",
		FileName: src.FileName, SourceKey: src.SourceKey, SourceURL: src.URL, DeclaredFormat: req.Format,
		Credential: src.Credential, Status: store.StatusPending, WorkflowID: contract.WorkflowID(id)}, nil
}

// checkNodes refuses a download that cannot run: a pool without nodes, or
// a preferred node that does not serve the pool. A pool whose nodes all
// look offline is not refused: the status is up to one health round old,
// and an agent that has just restarted already answers. The workflow's
// bounded wait finds it (the image says it waits for a node of the pool),
// or fails with no_node_available naming each node and why.
func (s *Server) checkNodes(ctx context.Context, pool store.Pool, preferred string) error {
	nodes, err := s.store.NodesForPool(ctx, pool.ID)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return apiErr(fault.NoNodeAvailable, "pool %q has no nodes: no node is assigned to it and no node agent reports serving it. Register a node (POST /v1/nodes) whose agent serves the pool (--pool %s=DIR), and assign it to the pool", pool.ID, pool.ID)
	}
	if preferred == "" {
		return nil
	}
	var ids []string
	for _, n := range nodes {
		if n.ID == preferred {
			return nil
		}
		ids = append(ids, n.ID)
	}
	return apiErr(fault.UnprocessableRequest, "node %q does not serve pool %q; its nodes are: %s. Leave node_id out, or pick one of them", preferred, pool.ID, strings.Join(ids, ", "))
}
