package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
		if job.URL == "" {
			// A copy of an image (an upload) has no mirror to download
			// from instead.
			return req, nil, failover(fault.NoNodeAvailable, "the agent of %s cannot copy from peers, and image %s has no mirror to download from: upgrade its cloudimages",
				node.ID, job.ImageID)
		}
		activity.GetLogger(ctx).Info("the node's agent cannot copy from peers: downloading from the mirror", "image_id", job.ImageID, "node_id", node.ID)
		return req, nil, nil
	}
	src, peer, skipped, err := a.resolvePeer(ctx, job)
	if err != nil {
		return req, nil, err
	}
	if src.ID == "" {
		// The agent holds this job as a peer copy (or will): the mirror is
		// another request, under another id, which the workflow starts.
		return req, nil, peerFailed(fault.NoNodeAvailable, "no READY copy is left to copy image %s from%s", job.ImageID, skipped)
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
//
// With none usable, the image is empty and skipped says why each was not
// (": image X on node N: node N is offline; …"), so that the error names
// the nodes to look at.
func (a *Activities) resolvePeer(ctx context.Context, job Job) (store.Image, agentclient.PeerSource, string, error) {
	var why []string
	for _, id := range job.Peers {
		if slices.Contains(job.DeadPeers, id) {
			why = append(why, fmt.Sprintf("image %s failed this copy before", id))
			continue
		}
		img, err := a.Store.Image(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			why = append(why, fmt.Sprintf("image %s was deleted", id))
			continue
		} else if err != nil {
			return store.Image{}, agentclient.PeerSource{}, "", err
		}
		if img.Status != store.StatusReady || img.FileChecksum == "" || img.NodeID == "" || img.NodeID == job.NodeID {
			why = append(why, fmt.Sprintf("image %s is %s on node %q", id, img.Status, img.NodeID))
			continue
		}
		n, err := a.Store.Node(ctx, img.NodeID)
		if errors.Is(err, store.ErrNotFound) {
			why = append(why, fmt.Sprintf("image %s is on node %s, which was deleted", id, img.NodeID))
			continue
		} else if err != nil {
			return store.Image{}, agentclient.PeerSource{}, "", err
		}
		if n.Status == store.NodeOffline {
			why = append(why, fmt.Sprintf("image %s is on node %s, which is offline", id, n.ID))
			continue
		}
		token := nodeauth.MintFileRead(nodeauth.Credential(a.NodeToken, n.ID), img.PoolID, img.FileName, time.Now().Add(peerTokenLifetime))
		return img, agentclient.PeerSource{NodeID: n.ID, Address: n.Address, PoolID: img.PoolID, FileName: img.FileName, Token: token}, "", nil
	}
	activity.GetLogger(ctx).Info("no READY copy is left to copy from", "image_id", job.ImageID, "node_id", job.NodeID, "skipped", why)
	skipped := ""
	if len(why) > 0 {
		skipped = ": " + strings.Join(why, "; ")
	}
	return store.Image{}, agentclient.PeerSource{}, skipped, nil
}

// SourcePeer is ReadyRequest.Source for a copy made from another node's
// file (store.SourcePeer), for the workflow, which does not use the store.
const SourcePeer = store.SourcePeer
