package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
)

// fileTimeout bounds one node's removal of a file.
const fileTimeout = 5 * time.Second

// ImageFileRequest names a READY image whose file is to be removed.
type ImageFileRequest struct {
	ImageID string
}

// ImageFileRemoved says which node removed an image's file; Gone says the
// image had no record any more, so there was nothing to remove.
type ImageFileRemoved struct {
	NodeID string
	Gone   bool
}

// RemoveImageFile removes a READY image's file from its pool through a
// node agent. On a shared pool any node of the pool can do it, the image's
// own first; on a local pool only the image's node has the file. When no
// node can, the error is node_unreachable, naming each node and why.
func (a *Activities) RemoveImageFile(ctx context.Context, in ImageFileRequest) (ImageFileRemoved, error) {
	img, err := a.Store.Image(ctx, in.ImageID)
	if errors.Is(err, store.ErrNotFound) {
		return ImageFileRemoved{Gone: true}, nil
	} else if err != nil {
		return ImageFileRemoved{}, err
	}
	if img.Status != store.StatusReady {
		return ImageFileRemoved{}, fatal(fault.Conflict, "image %q is %s, not READY: only a READY image's file is removed this way (DELETE /v1/images/%s cancels a live download)", img.ID, img.Status, img.ID)
	}
	candidates, err := a.fileNodes(ctx, img)
	if err != nil {
		return ImageFileRemoved{}, err
	}
	if len(candidates) == 0 {
		return ImageFileRemoved{}, fatal(fault.NodeUnreachable, "no node can remove %s of image %q: node %q is not registered any more. Register it again, or delete with ?force=true to drop the record and leave the file", img.FileName, img.ID, img.NodeID)
	}
	var failures []string
	for _, n := range candidates {
		cctx, cancel := context.WithTimeout(ctx, fileTimeout)
		err := a.client(n).DeleteFile(cctx, img.PoolID, img.FileName)
		cancel()
		if err == nil {
			activity.GetLogger(ctx).Info("image file removed", "image_id", img.ID, "pool_id", img.PoolID, "node_id", n.ID, "file_name", img.FileName)
			return ImageFileRemoved{NodeID: n.ID}, nil
		}
		if ctx.Err() != nil {
			return ImageFileRemoved{}, ctx.Err()
		}
		failures = append(failures, fmt.Sprintf("%s: %v", n.ID, err))
	}
	return ImageFileRemoved{}, retryable(fault.NodeUnreachable,
		"could not remove %s of image %q from pool %q, so the image is kept: %s. Start the node agent and try again, or delete with ?force=true to drop the record and leave the file",
		img.FileName, img.ID, img.PoolID, strings.Join(failures, "; "))
}

// fileNodes are the nodes that can remove img's file, in the order to ask
// them.
func (a *Activities) fileNodes(ctx context.Context, img store.Image) ([]store.Node, error) {
	pool, err := a.Store.Pool(ctx, img.PoolID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var candidates []store.Node
	if err == nil {
		nodes, err := a.Store.NodesForPool(ctx, img.PoolID)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			if n.ID == img.NodeID {
				candidates = append([]store.Node{n}, candidates...)
			} else if pool.Shared {
				candidates = append(candidates, n)
			}
		}
	}
	if len(candidates) == 0 && img.NodeID != "" {
		if n, err := a.Store.Node(ctx, img.NodeID); err == nil {
			candidates = append(candidates, n)
		}
	}
	return candidates, nil
}

// DeleteImageRecord deletes an image's record once its file is gone (or
// is to be left behind). A record deleted already is not an error.
func (a *Activities) DeleteImageRecord(ctx context.Context, imageID string) error {
	if err := a.Store.DeleteImage(ctx, imageID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	activity.GetLogger(ctx).Info("image record deleted", "image_id", imageID)
	return nil
}
