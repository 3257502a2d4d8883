package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// The steps of DistributeImageWorkflow that touch the database: plan the
// copies (adopting what the pools have), record each copy as it goes, and
// record how the distribution ended.

// DistributionPlan is what a distribution copies: its source, as each
// child download gets it, and one copy per pool.
type DistributionPlan struct {
	DistributionID string
	CatalogID      string
	URL            string
	Name           string
	Checksum       string
	// SourceImageID is the READY image a distribution of an image copies
	// (there is no mirror then), and SourceNodeID its node: the first
	// source, whether or not its pool is one of the targets.
	SourceImageID string `json:",omitempty"`
	SourceNodeID  string `json:",omitempty"`
	Copies        []PlannedCopy
}

// PlannedCopy is one pool's copy as the plan found it.
type PlannedCopy struct {
	PoolID  string
	ImageID string
	// Status is the image's: READY (a source from the start), a live one
	// (adopted: the distribution waits for it) or PENDING for a new image
	// whose download the distribution starts (New). FAILED with Code and
	// Message when the pool cannot have a copy.
	Status   string
	New      bool
	Adopted  bool
	NodeID   string // of a READY copy
	Checksum string // of a READY copy: the source checksum it was verified against
	Code     string `json:",omitempty"`
	Message  string `json:",omitempty"`
}

// PlanDistribution resolves the distribution's pools (all_pools now), and
// makes sure each has a copy: one already READY in an earlier run, a live
// or READY image of the same source already in the pool (adopted), or a
// new PENDING image. A copy that FAILED or was CANCELLED gets a new image:
// a distribution posted again retries its failed pools so.
func (a *Activities) PlanDistribution(ctx context.Context, distributionID string) (DistributionPlan, error) {
	d, err := a.Store.Distribution(ctx, distributionID)
	if err != nil {
		return DistributionPlan{}, asStoreError(err)
	}
	src, srcImg, err := a.distributionSource(ctx, d)
	if err != nil {
		return DistributionPlan{}, err
	}
	poolIDs := []string(d.PoolIDs)
	if d.AllPools {
		pools, err := a.Store.Pools(ctx)
		if err != nil {
			return DistributionPlan{}, err
		}
		poolIDs = poolIDs[:0:0]
		for _, p := range pools {
			poolIDs = append(poolIDs, p.ID)
		}
	}
	if err := a.Store.StartDistribution(ctx, d.ID, poolIDs); err != nil {
		return DistributionPlan{}, asStoreError(err)
	}
	had := map[string]store.DistributionCopy{}
	for _, c := range d.Copies {
		had[c.PoolID] = c
	}
	plan := DistributionPlan{DistributionID: d.ID, CatalogID: d.CatalogID, URL: d.URL, Name: d.Name, Checksum: src.Checksum,
		SourceImageID: srcImg.ID, SourceNodeID: srcImg.NodeID}
	for _, poolID := range poolIDs {
		pc, err := a.planCopy(ctx, d, src, poolID, had[poolID])
		if err != nil {
			return DistributionPlan{}, err
		}
		plan.Copies = append(plan.Copies, pc)
	}
	activity.GetLogger(ctx).Info("distribution planned", "distribution_id", d.ID, "pools", len(poolIDs))
	return plan, nil
}

// distributionSource is the source every copy of d is of: the catalog
// entry or URL, resolved as for an image, or, for a distribution of an
// image, that image as it is now, which must still be READY.
func (a *Activities) distributionSource(ctx context.Context, d store.Distribution) (source.Source, store.Image, error) {
	if d.SourceImageID == "" {
		src, err := source.Resolve(a.Catalog, source.Request{CatalogID: d.CatalogID, URL: d.URL, Name: d.Name, Checksum: d.Checksum, PoolID: "-"})
		if err != nil {
			fe := fault.From(err)
			return src, store.Image{}, fatal(fe.Code, "%s", fe.Message)
		}
		return src, store.Image{}, nil
	}
	img, src, err := a.readyImage(ctx, d.SourceImageID)
	return src, img, err
}

// readyImage is the source image of a distribution of an image, with the
// source its copies are of: its name, file name, source key and checksums.
// Gone or no longer READY, there is nothing to copy, and no mirror to get
// it from instead.
func (a *Activities) readyImage(ctx context.Context, imageID string) (store.Image, source.Source, error) {
	img, err := a.Store.Image(ctx, imageID)
	if errors.Is(err, store.ErrNotFound) {
		return img, source.Source{}, fatal(fault.NotFound, "the source image %q was deleted: upload it again, then distribute the new image", imageID)
	} else if err != nil {
		return img, source.Source{}, err
	}
	if img.Status != store.StatusReady || img.FileChecksum == "" {
		return img, source.Source{}, fatal(fault.Conflict, "the source image %q is %s, not READY with a file checksum: distribute a READY image (GET /v1/images?status=READY)", imageID, img.Status)
	}
	sum := img.Checksum
	if sum == "" {
		sum = img.FileChecksum
	}
	return img, source.Source{CatalogID: img.CatalogID, Name: img.Name, FileName: img.FileName, SourceKey: img.SourceKey, Checksum: sum, SizeBytes: img.SizeBytes,
		Format: img.Format, Unverified: img.Unverified, Signature: img.Signature, Version: img.Version}, nil
}

// ResolveImageSource is the first step of a copy of a distribution of an
// image (Input.SourceImageID), in place of ResolveSource: the source is
// the image's, read from the store, and the bytes come from its node.
func (a *Activities) ResolveImageSource(ctx context.Context, imageID string) (source.Source, error) {
	_, src, err := a.readyImage(ctx, imageID)
	return src, err
}

func (a *Activities) planCopy(ctx context.Context, d store.Distribution, src source.Source, poolID string, had store.DistributionCopy) (PlannedCopy, error) {
	if had.ImageID != "" && !store.IsTerminal(had.Status) || had.Status == store.StatusReady {
		if img, err := a.Store.Image(ctx, had.ImageID); err == nil && (img.Status == store.StatusReady || !img.Terminal()) {
			// A live copy of our own from a run that ended early (terminated)
			// has its child started again: a no-op while its workflow runs
			// (then it is waited for), a new run that heals the image if not.
			return PlannedCopy{PoolID: poolID, ImageID: img.ID, Status: img.Status, Adopted: had.Adopted, NodeID: img.NodeID,
				Checksum: img.Checksum, New: !img.Terminal() && !had.Adopted}, nil
		}
	}
	pool, err := a.Store.Pool(ctx, poolID)
	if errors.Is(err, store.ErrNotFound) {
		return a.failCopy(ctx, d.ID, poolID, fault.PoolNotFound, fmt.Sprintf("pool %q does not exist any more", poolID))
	} else if err != nil {
		return PlannedCopy{}, err
	}
	if img, ok, err := a.Store.LiveImage(ctx, poolID, src.SourceKey); err != nil {
		return PlannedCopy{}, err
	} else if ok {
		pc := PlannedCopy{PoolID: poolID, ImageID: img.ID, Status: img.Status, Adopted: true, NodeID: img.NodeID, Checksum: img.Checksum}
		source := ""
		if img.Status == store.StatusReady {
			source = img.Source
		}
		return pc, a.Store.SaveCopy(ctx, store.DistributionCopy{DistributionID: d.ID, PoolID: poolID, ImageID: img.ID,
			Status: img.Status, Adopted: true, Source: source})
	}
	id := uuid.NewString()
	img := &store.Image{ID: id, Name: src.Name, CatalogID: src.CatalogID, SourceURL: src.URL, SourceKey: src.SourceKey,
		PoolID: poolID, FileName: source.FileNameIn(src.FileName, pool.ImageFormat), Status: store.StatusPending,
		SizeBytes: src.SizeBytes, Checksum: src.Checksum, WorkflowID: contract.WorkflowID(id)}
	got, created, err := a.Store.CreateImage(ctx, img)
	switch {
	case errors.Is(err, store.ErrFileNameTaken):
		return a.failCopy(ctx, d.ID, poolID, fault.Conflict, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return a.failCopy(ctx, d.ID, poolID, fault.PoolNotFound, fmt.Sprintf("pool %q does not exist any more", poolID))
	case err != nil:
		return PlannedCopy{}, err
	}
	pc := PlannedCopy{PoolID: poolID, ImageID: got.ID, Status: got.Status, New: created, Adopted: !created, NodeID: got.NodeID, Checksum: got.Checksum}
	return pc, a.Store.SaveCopy(ctx, store.DistributionCopy{DistributionID: d.ID, PoolID: poolID, ImageID: got.ID, Status: got.Status, Adopted: !created})
}

func (a *Activities) failCopy(ctx context.Context, distributionID, poolID, code, msg string) (PlannedCopy, error) {
	err := a.Store.SaveCopy(ctx, store.DistributionCopy{DistributionID: distributionID, PoolID: poolID, Status: store.StatusFailed,
		ErrorCode: code, ErrorMessage: msg})
	return PlannedCopy{PoolID: poolID, Status: store.StatusFailed, Code: code, Message: msg}, err
}

// CopyRecord is one copy's state as the distribution records it.
type CopyRecord struct {
	DistributionID  string
	PoolID          string
	ImageID         string
	Status          string
	Source          string // "mirror" or "node:NODE_ID"
	Adopted         bool
	BytesFromMirror int64
	BytesFromPeers  int64
	Code            string `json:",omitempty"`
	Message         string `json:",omitempty"`
}

// RecordCopy writes one copy of a distribution.
func (a *Activities) RecordCopy(ctx context.Context, in CopyRecord) error {
	err := a.Store.SaveCopy(ctx, store.DistributionCopy{DistributionID: in.DistributionID, PoolID: in.PoolID, ImageID: in.ImageID,
		Status: in.Status, Source: in.Source, Adopted: in.Adopted, BytesFromMirror: in.BytesFromMirror, BytesFromPeers: in.BytesFromPeers,
		ErrorCode: in.Code, ErrorMessage: in.Message})
	return asStoreError(err)
}

// DistributionEnd is how a distribution ended.
type DistributionEnd struct {
	DistributionID string
	Status         string
	Message        string `json:",omitempty"`
}

// EndDistribution records how a distribution ended.
func (a *Activities) EndDistribution(ctx context.Context, in DistributionEnd) error {
	if err := a.Store.EndDistribution(ctx, in.DistributionID, in.Status, in.Message); err != nil {
		return asStoreError(err)
	}
	activity.GetLogger(ctx).Info("distribution ended", "distribution_id", in.DistributionID, "status", in.Status, "message", in.Message)
	return nil
}
