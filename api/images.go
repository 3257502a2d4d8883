package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/store"
)

var statuses = imagestate.Statuses

// listImages answers one page of images, newest first. The next page
// starts after the last image of this one (next_page_token), so paging
// through shows every image once even while downloads are added.
func (s *Server) listImages(c echo.Context) error {
	f := store.ImageFilter{PoolID: c.QueryParam("pool_id"), Status: strings.ToUpper(c.QueryParam("status"))}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return apiErr(fault.InvalidRequest, "status %q: want one of %s", c.QueryParam("status"), strings.Join(statuses, ", "))
	}
	limit, err := pageLimit(c.QueryParam("limit"))
	if err != nil {
		return err
	}
	if tok := c.QueryParam("page_token"); tok != "" {
		after, err := decodePageToken(tok)
		if err != nil {
			return err
		}
		f.After = &after
	}
	if f.PoolID != "" {
		if _, err := s.pool(c, f.PoolID); err != nil {
			return err
		}
	}
	f.Limit = limit + 1 // one more tells whether there is a next page
	imgs, err := s.store.Images(c.Request().Context(), f)
	if err != nil {
		return err
	}
	page := imagePage{Items: viewImages(imgs)}
	if err := s.markLatest(c.Request().Context(), page.Items); err != nil {
		return err
	}
	if len(imgs) > limit {
		page.Items = page.Items[:limit]
		page.NextPageToken = encodePageToken(store.CursorOf(imgs[limit-1]))
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) getImage(c echo.Context) error {
	img, err := s.image(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	v := []Image{viewImage(img)}
	if err := s.markLatest(c.Request().Context(), v); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v[0])
}

// markLatest marks the images a pool's -latest link names.
func (s *Server) markLatest(ctx context.Context, imgs []Image) error {
	ids, err := s.store.LatestImageIDs(ctx)
	if err != nil {
		return err
	}
	for i := range imgs {
		imgs[i].Latest = ids[imgs[i].ID]
	}
	return nil
}

// imageChange is the body of PATCH /v1/images/{id}.
type imageChange struct {
	Pinned *bool `json:"pinned"`
}

// patchImage pins or unpins an image: a pinned image is never removed by
// a subscription's retention, nor by DELETE until it is unpinned.
func (s *Server) patchImage(c echo.Context) error {
	ctx := c.Request().Context()
	var req imageChange
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Pinned == nil {
		return apiErr(fault.InvalidRequest, "give \"pinned\": true or false")
	}
	img, err := s.image(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if img, err = s.store.SetPinned(ctx, img.ID, *req.Pinned); err != nil {
		return err
	}
	s.log.Info("image pinned", "image_id", img.ID, "pool_id", img.PoolID, "pinned", img.Pinned)
	v := []Image{viewImage(img)}
	if err := s.markLatest(ctx, v); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v[0])
}

func (s *Server) image(ctx context.Context, id string) (store.Image, error) {
	img, err := s.store.Image(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return img, apiErr(fault.NotFound, "image %q does not exist: GET /v1/images lists the images", id)
	}
	return img, err
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
	if img.Pinned {
		return apiErr(fault.Conflict, "image %q is pinned: unpin it (PATCH /v1/images/%s {\"pinned\": false}) to delete it", img.ID, img.ID)
	}
	if img.Status == store.StatusReady {
		if err := s.removeFile(ctx, img, c.QueryParam("force") == "true"); err != nil {
			return err
		}
	} else if err := s.store.DeleteImage(ctx, img.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.log.Info("image deleted", "image_id", img.ID, "pool_id", img.PoolID, "status", img.Status)
	return c.NoContent(http.StatusNoContent)
}

// cancelImage asks the download's workflow to cancel: the workflow stops
// the node's job, removes the partial data and marks the image CANCELLED.
// The API writes no status of a download that has a workflow. Only when
// none runs — it was never started (the API stopped between the insert
// and the start, or Temporal refused the start), or it ended without
// settling the record (terminated) — is nobody left to write it, and the
// record is settled CANCELLED here; the store refuses that for an image
// that became terminal meanwhile.
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
	err = s.store.Transition(ctx, img.ID, store.ToCancelled{Failovers: img.Failovers})
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
