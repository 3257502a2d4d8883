package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// StartUploadOnNode creates the node-side upload, which then waits for the
// bytes the API streams to it. The agent makes it idempotent by the job's
// id, so a retry never makes a second one. Job.SizeBytes is the declared,
// exact size.
func (a *Activities) StartUploadOnNode(ctx context.Context, job Job) (Started, error) {
	c, node, err := a.node(ctx, job.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return Started{}, failover(fault.NodeUnreachable, "node %s was deleted", job.NodeID)
	} else if err != nil {
		return Started{}, err
	}
	req := agentclient.UploadRequest{ID: job.DownloadID, PoolID: job.PoolID, FileName: job.FileName,
		Checksum: job.Checksum, SizeBytes: job.SizeBytes, Format: job.Format}
	if job.ImageFormat != "" {
		if !job.NodeConverts {
			return Started{}, failover(fault.NoNodeAvailable, "%s has no qemu-img, and pool %q wants its images as %s: install qemu-utils there (apt-get install qemu-utils) and restart its agent",
				node.ID, job.PoolID, job.ImageFormat)
		}
		req.ConvertTo = job.ImageFormat
	}
	d, err := c.StartUpload(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return Started{}, ctx.Err()
		}
		return Started{}, fromNode(node.ID, fault.From(err), job.Shared)
	}
	activity.GetLogger(ctx).Info("upload created on node", "image_id", job.ImageID, "node_id", job.NodeID, "pool_id", job.PoolID,
		"bytes_done", d.BytesDone, "convert_to", req.ConvertTo)
	return Started{NodeID: job.NodeID, Path: d.Path, State: d.State, BytesDone: d.BytesDone, BytesTotal: job.SizeBytes}, nil
}
