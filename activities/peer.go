package activities

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
)

// peerTokenLifetime is how long the token a target reads its source's
// file with lives: as long as nodeauth allows, for a large copy's
// reconnects. Requests differing only in the token (or the peer) are the
// same request to the agent, so a retried start is no conflict.
const peerTokenLifetime = nodeauth.MaxLifetime

// PeerUsed is the READY copy a job copies from.
type PeerUsed struct {
	ImageID string
	NodeID  string
}

// peerOrURLRequest is the node-side request of a job: from a peer when the
// job names READY copies and the target's agent can copy from peers (its
// health names FeaturePeerCopy), else from the job's URL.
func (a *Activities) peerOrURLRequest(ctx context.Context, job Job, node store.Node) (agentclient.DownloadRequest, *PeerUsed, error) {
	req, err := a.downloadRequest(ctx, job, node)
	if err != nil || len(job.Peers) == 0 {
		return req, nil, err
	}
	if !slices.Contains(job.NodeFeatures, agentclient.FeaturePeerCopy) {
		activity.GetLogger(ctx).Info("the node's agent cannot copy from peers: downloading from the mirror", "image_id", job.ImageID, "node_id", node.ID)
		return req, nil, nil
	}
	src, peer, ok, err := a.resolvePeer(ctx, job)
	if err != nil {
		return req, nil, err
	}
	if !ok {
		// The agent holds this job as a peer copy (or will): the mirror is
		// another request, under another id, which the workflow starts.
		return req, nil, peerFailed(fault.NoNodeAvailable, "no READY copy is left to copy image %s from", job.ImageID)
	}
	req.URL, req.Mirrors, req.Credential = "", nil, nil
	req.Peer = &peer
	// The copy is the source's published file, verified against its
	// checksum on arrival; a pool that wants another format converts it
	// after (ConvertTo stays as downloadRequest set it).
	req.Checksum, req.Format, req.SizeBytes = src.FileChecksum, src.Format, src.SizeBytes
	return req, &PeerUsed{ImageID: src.ID, NodeID: src.NodeID}, nil
}

// resolvePeer picks the first of the job's copies that is still a usable
// source: READY, verified (its file checksum known), on a node that is not
// the target and not known to be offline. It mints the token the target
// reads the file with, from the SOURCE node's credential: it opens that one
// file on that node, for a while, and nothing else.
func (a *Activities) resolvePeer(ctx context.Context, job Job) (store.Image, agentclient.PeerSource, bool, error) {
	for _, id := range job.Peers {
		if slices.Contains(job.DeadPeers, id) {
			continue
		}
		img, err := a.Store.Image(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return img, agentclient.PeerSource{}, false, err
		}
		if img.Status != store.StatusReady || img.FileChecksum == "" || img.NodeID == "" || img.NodeID == job.NodeID {
			continue
		}
		n, err := a.Store.Node(ctx, img.NodeID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return img, agentclient.PeerSource{}, false, err
		}
		if n.Status == store.NodeOffline {
			continue
		}
		token := nodeauth.MintFileRead(nodeauth.Credential(a.NodeToken, n.ID), img.PoolID, img.FileName, time.Now().Add(peerTokenLifetime))
		return img, agentclient.PeerSource{NodeID: n.ID, Address: n.Address, PoolID: img.PoolID, FileName: img.FileName, Token: token}, true, nil
	}
	activity.GetLogger(ctx).Info("no READY copy is left to copy from", "image_id", job.ImageID, "node_id", job.NodeID)
	return store.Image{}, agentclient.PeerSource{}, false, nil
}

// SourcePeer is ReadyRequest.Source for a copy made from another node's
// file (store.SourcePeer), for the workflow, which does not use the store.
const SourcePeer = store.SourcePeer
