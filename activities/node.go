package activities

import (
	"context"
	"errors"
	"slices"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// Job is a download on one node.
type Job struct {
	ImageID    string
	DownloadID string // the node-side job id: the image's id, on every node
	NodeID     string
	PoolID     string
	FileName   string
	URL        string
	Checksum   string // empty for an unverified image
	Format     string // disk format, checked by the node ("qcow2" must be qcow2)
	SizeBytes  int64  // expected size, for progress only: the agent takes a size as exact
	Shared     bool   // the pool is shared: a full disk is every node's
	Attempt    int    // 1 on the first node, +1 on every failover
	// ImageFormat is the pool's image_format ("" keeps the vendor's), and
	// NodeConverts whether the node's agent said it converts (the pick's
	// Candidate.Converts): ConvertTo is sent only to an agent that does.
	ImageFormat  string
	NodeConverts bool
	// Mirrors are more URLs of the file, tried in order after URL by an
	// agent that supports them (NodeFeatures). Credential is the name of
	// a source credential of the worker's --credentials: its secret is
	// looked up when the request is sent, never carried here.
	Mirrors      []string `json:",omitempty"`
	Credential   string   `json:",omitempty"`
	NodeFeatures []string `json:",omitempty"`
	// MaxBytesPerSecond caps the download's rate on the node (0: none),
	// sent only to an agent that supports it.
	MaxBytesPerSecond int64
	// Peers are READY copies (image ids) of a distribution, in the order to
	// copy from, to an agent that supports FeaturePeerCopy; DeadPeers are
	// those that failed this download. With none left, or an agent that
	// cannot copy from peers, the job downloads from URL.
	Peers     []string `json:",omitempty"`
	DeadPeers []string `json:",omitempty"`
	// PeerImageID is the copy the started job reads from ("" for URL): a
	// failure of the job is then first the source's (PeerFailedError).
	PeerImageID string `json:",omitempty"`
	// Failed are the nodes that already failed in this download: a node
	// that dies is left at once only for a node not among them (the pick
	// would refuse those).
	Failed []string `json:",omitempty"`
}

// Started is the node-side job as the node reported it when started.
type Started struct {
	NodeID    string
	Path      string
	State     string
	BytesDone int64
	// BytesTotal is the node's size of the image, or the expected one.
	BytesTotal int64
	// Peer is the copy the job reads from, when it copies from a peer.
	Peer *PeerUsed `json:",omitempty"`
}

// StartOnNode starts the node-side download; the workflow then records
// the image DOWNLOADING. The agent makes it idempotent
// by the job's id, so a retry (or a retried workflow task) never starts a
// second transfer. A node that does not answer fails the attempt; the
// workflow's retry policy bounds the attempts and then fails over.
func (a *Activities) StartOnNode(ctx context.Context, job Job) (Started, error) {
	c, node, err := a.node(ctx, job.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return Started{}, failover(fault.NodeUnreachable, "node %s was deleted", job.NodeID)
	} else if err != nil {
		return Started{}, err
	}
	req, peer, err := a.peerOrURLRequest(ctx, job, node)
	if err != nil {
		return Started{}, err
	}
	d, err := c.StartDownload(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return Started{}, ctx.Err()
		}
		return Started{}, fromNode(node.ID, fault.From(err), job.Shared)
	}
	activity.GetLogger(ctx).Info("download started on node", "image_id", job.ImageID, "node_id", job.NodeID, "pool_id", job.PoolID,
		"attempt", job.Attempt, "bytes_done", d.BytesDone, "convert_to", req.ConvertTo, "max_bytes_per_second", req.MaxBytesPerSecond)
	return Started{NodeID: job.NodeID, Path: d.Path, State: d.State, BytesDone: d.BytesDone,
		BytesTotal: orSize(d.BytesTotal, job.SizeBytes), Peer: peer}, nil
}

// downloadRequest is the node-side request of a job: what the node's agent
// supports of it, and the secret of its credential, looked up now.
func (a *Activities) downloadRequest(ctx context.Context, job Job, node store.Node) (agentclient.DownloadRequest, error) {
	req := agentclient.DownloadRequest{ID: job.DownloadID, URL: job.URL, PoolID: job.PoolID,
		FileName: job.FileName, Checksum: job.Checksum, Format: job.Format}
	if job.ImageFormat != "" {
		if !job.NodeConverts {
			// An agent without qemu-img would publish the image as the
			// vendor ships it in a pool that wants another format.
			return req, failover(fault.NoNodeAvailable, "%s has no qemu-img, and pool %q wants its images as %s: install qemu-utils there (apt-get install qemu-utils) and restart its agent",
				node.ID, job.PoolID, job.ImageFormat)
		}
		req.ConvertTo = job.ImageFormat
	}
	if len(job.Mirrors) > 0 && slices.Contains(job.NodeFeatures, agentclient.FeatureMirrors) {
		req.Mirrors = job.Mirrors // an older agent gets the first URL only
	}
	if job.MaxBytesPerSecond > 0 {
		// An older agent would refuse the field: it downloads uncapped.
		if slices.Contains(job.NodeFeatures, agentclient.FeatureBandwidthLimit) {
			req.MaxBytesPerSecond = job.MaxBytesPerSecond
		} else {
			activity.GetLogger(ctx).Warn("the node's agent does not support a per-download bandwidth cap: downloading without it",
				"image_id", job.ImageID, "node_id", node.ID, "max_bytes_per_second", job.MaxBytesPerSecond)
		}
	}
	if job.Credential != "" {
		if !slices.Contains(job.NodeFeatures, agentclient.FeatureSourceCredentials) {
			return req, failover(fault.NoNodeAvailable, "the agent of %s does not support source credentials, and this download needs credential %q: upgrade its cloudimages",
				node.ID, job.Credential)
		}
		c, err := a.credential(job.Credential, req.URLs())
		if err != nil {
			return req, err
		}
		req.Credential = &c
	}
	return req, nil
}

// CancelRequest asks a node to stop a download and remove its partial data.
type CancelRequest struct {
	NodeID     string
	DownloadID string
}

// CancelOnNode stops the node-side job and removes its partial data. A
// node that was deleted has nothing left to clean.
func (a *Activities) CancelOnNode(ctx context.Context, in CancelRequest) error {
	c, _, err := a.node(ctx, in.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if err := c.CancelDownload(ctx, in.DownloadID); err != nil {
		return retryable(fault.CodeOf(err), "cancel download %s on node %s: %v", in.DownloadID, in.NodeID, err)
	}
	activity.GetLogger(ctx).Info("download cancelled on node", "image_id", in.DownloadID, "node_id", in.NodeID)
	return nil
}

// Paused is the node-side job as a pause left it: State is
// agentclient.StatePaused, or the state it was already past the transfer
// in (completed, verifying…), when the pause came too late.
type Paused struct {
	State     string
	BytesDone int64
}

// PauseOnNode stops the node-side transfer at the end of a transfer
// window and keeps its partial data: the next StartOnNode of the same job
// resumes it. A job the node finished meanwhile is no error: its state
// says so and the workflow watches it to its end.
func (a *Activities) PauseOnNode(ctx context.Context, in CancelRequest) (Paused, error) {
	c, _, err := a.node(ctx, in.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return Paused{}, failover(fault.NodeUnreachable, "node %s was deleted", in.NodeID)
	} else if err != nil {
		return Paused{}, err
	}
	d, err := c.PauseDownload(ctx, in.DownloadID)
	if fe, ok := fault.As(err); ok && fe.Code == fault.Conflict {
		// Ended before the pause reached it: the watch reads how.
		if d, err := c.Download(ctx, in.DownloadID); err == nil {
			return Paused{State: d.State, BytesDone: d.BytesDone}, nil
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return Paused{}, ctx.Err()
		}
		return Paused{}, retryable(fault.CodeOf(err), "pause download %s on node %s: %v", in.DownloadID, in.NodeID, err)
	}
	activity.GetLogger(ctx).Info("download paused on node", "image_id", in.DownloadID, "node_id", in.NodeID, "state", d.State, "bytes_done", d.BytesDone)
	return Paused{State: d.State, BytesDone: d.BytesDone}, nil
}

// FileRequest names a published image in a node's pool.
type FileRequest struct {
	NodeID   string
	PoolID   string
	FileName string
}

// RemoveFile removes a published image from a node's pool: one whose
// download finished after its image stopped being wanted (cancelled while
// it was being verified), so no file stays behind that no image owns.
func (a *Activities) RemoveFile(ctx context.Context, in FileRequest) error {
	c, _, err := a.node(ctx, in.NodeID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if err := c.DeleteFile(ctx, in.PoolID, in.FileName); err != nil {
		return retryable(fault.CodeOf(err), "remove %s from pool %s on node %s: %v", in.FileName, in.PoolID, in.NodeID, err)
	}
	activity.GetLogger(ctx).Info("published file removed", "node_id", in.NodeID, "pool_id", in.PoolID, "file_name", in.FileName)
	return nil
}
