package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

var statuses = []string{store.StatusPending, store.StatusDownloading, store.StatusVerifying,
	store.StatusReady, store.StatusFailed, store.StatusCancelled}

func (s *Server) listImages(c echo.Context) error {
	f := store.ImageFilter{PoolID: c.QueryParam("pool_id"), Status: strings.ToUpper(c.QueryParam("status"))}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return apiErr(fault.InvalidRequest, "status %q: want one of %s", c.QueryParam("status"), strings.Join(statuses, ", "))
	}
	if f.PoolID != "" {
		if _, err := s.pool(c, f.PoolID); err != nil {
			return err
		}
	}
	imgs, err := s.store.Images(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, listOf(viewImages(imgs)))
}

func (s *Server) getImage(c echo.Context) error {
	img, err := s.image(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewLive(c.Request().Context(), img))
}

func (s *Server) image(ctx context.Context, id string) (store.Image, error) {
	img, err := s.store.Image(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return img, apiErr(fault.NotFound, "image %q does not exist: GET /v1/images lists the images", id)
	}
	return img, err
}

// viewLive is the image's view with its failovers: asked from the
// workflow, briefly and at most every few seconds, and only for a live
// download past its first attempt (there are none before).
func (s *Server) viewLive(ctx context.Context, img store.Image) imageView {
	v := viewImage(img)
	if !img.Terminal() && img.Attempt > 1 {
		v.Failovers = s.failover.get(img.ID, func() ([]contract.Failover, bool) {
			return s.queryFailovers(ctx, img.ID)
		})
	}
	return v
}

// failoverCache keeps the failovers of each image for a few seconds, so
// that many clients following one download ask its workflow once.
type failoverCache struct {
	mu      sync.Mutex
	entries map[string]failoverEntry
}

type failoverEntry struct {
	at        time.Time
	failovers []contract.Failover
}

const failoverTTL = 5 * time.Second

func newFailoverCache() *failoverCache {
	return &failoverCache{entries: map[string]failoverEntry{}}
}

func (f *failoverCache) get(id string, fetch func() ([]contract.Failover, bool)) []contract.Failover {
	f.mu.Lock()
	e, ok := f.entries[id]
	f.mu.Unlock()
	if ok && time.Since(e.at) < failoverTTL {
		return e.failovers
	}
	got, answered := fetch()
	if !answered {
		got = e.failovers // keep what was known
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, old := range f.entries { // forget downloads nobody asks about
		if time.Since(old.at) > time.Minute {
			delete(f.entries, k)
		}
	}
	f.entries[id] = failoverEntry{at: time.Now(), failovers: got}
	return got
}

// deleteImage cancels a live download (202), or removes a terminal image
// (204): a READY one through RemoveImageFileWorkflow, which removes the
// file through a node agent that serves the pool and then the record.
func (s *Server) deleteImage(c echo.Context) error {
	ctx := c.Request().Context()
	img, err := s.image(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if !img.Terminal() {
		return s.cancelImage(c, img)
	}
	if img.Status == store.StatusReady {
		if err := s.removeFile(ctx, img, c.QueryParam("force") == "true"); err != nil {
			return err
		}
	} else if err := s.store.DeleteImage(ctx, img.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.failover.forget(img.ID)
	s.log.Info("image deleted", "image_id", img.ID, "pool_id", img.PoolID, "status", img.Status)
	return c.NoContent(http.StatusNoContent)
}

func (f *failoverCache) forget(id string) {
	f.mu.Lock()
	delete(f.entries, id)
	f.mu.Unlock()
}

// cancelImage asks the download's workflow to cancel: the workflow stops
// the node's job, removes the partial data and marks the image CANCELLED.
// An image whose workflow does not run (it was never started, or it was
// terminated) has nobody to do that, so it is marked CANCELLED here.
func (s *Server) cancelImage(c echo.Context, img store.Image) error {
	ctx := c.Request().Context()
	state, err := s.describeDownload(ctx, img.ID)
	if err != nil {
		return err
	}
	if state == workflowRunning {
		sent, err := s.cancelDownload(ctx, img.ID)
		if err != nil {
			return err
		}
		if sent {
			s.log.Info("download cancel requested", "image_id", img.ID, "pool_id", img.PoolID, "workflow_id", img.WorkflowID)
			return c.JSON(http.StatusAccepted, viewImage(img))
		}
		// It ended between the two calls: look at the image again below.
	}
	err = s.store.Transition(ctx, img.ID, store.StatusCancelled, map[string]any{
		"error_code": fault.Cancelled, "error_message": "the download was cancelled", "bytes_per_second": 0,
	})
	if err != nil && !errors.Is(err, store.ErrTransition) {
		return err
	}
	cur, err := s.image(ctx, img.ID)
	if err != nil {
		return err
	}
	s.log.Info("download cancelled without a running workflow", "image_id", img.ID, "status", cur.Status)
	return c.JSON(http.StatusAccepted, viewImage(cur))
}
