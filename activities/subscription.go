package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// The steps of RefreshImageWorkflow: find the build the vendor publishes
// now, make an image of it in each pool, point each pool's -latest file
// at it, and keep only the newest few.

// Build is the build of a catalog entry that a subscription's check found.
type Build struct {
	SubscriptionID string
	CatalogID      string
	PoolIDs        []string
	Keep           int
	Checksum       string
	Version        string
	// Signature is what the signature of the checksum file that named
	// Checksum said (signature.Verified, Unsigned or NotChecked); "" when
	// the file was not fetched again (NotModified).
	Signature string
	// NotModified: the checksum file did not change since the last check
	// (a 304), so the build is the one seen then.
	NotModified bool
	// Skipped says why there is nothing to do: "paused" or "deleted".
	Skipped string
}

// CheckBuild is a check's first step: it fetches the vendor's checksum
// file of the subscription's entry, conditionally (If-None-Match with the
// ETag, If-Modified-Since with the Last-Modified of the last check), and
// records what it found. The fetch is the one every download's checksum
// goes through, so whatever that verifies is verified here too.
func (a *Activities) CheckBuild(ctx context.Context, subscriptionID string) (Build, error) {
	sub, err := a.Store.Subscription(ctx, subscriptionID)
	if errors.Is(err, store.ErrNotFound) {
		return Build{SubscriptionID: subscriptionID, Skipped: "deleted"}, nil
	} else if err != nil {
		return Build{}, err
	}
	b := Build{SubscriptionID: sub.ID, CatalogID: sub.CatalogID, PoolIDs: sub.PoolIDs, Keep: sub.Keep}
	if sub.Paused {
		b.Skipped = "paused"
		return b, nil
	}
	src, err := source.Resolve(a.Catalog, source.Request{CatalogID: sub.CatalogID, PoolID: "-"})
	if err != nil {
		fe := fault.From(err)
		return Build{}, fatal(fe.Code, "%s", fe.Message)
	}
	if src.Checksum != "" { // pinned in the catalog: the one build there is
		b.Checksum, b.Version = src.Checksum, catalog.Version("", src.URL, src.Checksum)
		return b, a.Store.RecordCheck(ctx, sub.ID, store.CheckedBuild{Checksum: b.Checksum, Version: b.Version})
	}
	var cond Validators
	if sub.SeenChecksum != "" { // a 304 is only of use with the build it confirms
		cond = Validators{ETag: sub.ChecksumETag, LastModified: sub.ChecksumLastModified}
	}
	f, err := a.fetchChecksumFile(ctx, src, cond)
	if err != nil {
		return Build{}, err
	}
	if f.NotModified {
		b.Checksum, b.Version, b.NotModified = sub.SeenChecksum, sub.SeenVersion, true
	} else {
		b.Checksum, b.Version, b.Signature = f.Checksum, catalog.Version(f.Listed, src.URL, f.Checksum), f.Signature
	}
	if b.Checksum != sub.SeenChecksum {
		a.event(ctx, store.SubscriptionEvent{SubscriptionID: sub.ID, Kind: store.EventNewBuild, Version: b.Version,
			Message: fmt.Sprintf("the vendor's checksum file names build %s (%s)", b.Version, b.Checksum)})
	}
	activity.GetLogger(ctx).Info("subscription checked", "subscription_id", sub.ID, "catalog_id", sub.CatalogID,
		"version", b.Version, "not_modified", b.NotModified)
	return b, a.Store.RecordCheck(ctx, sub.ID, store.CheckedBuild{Checksum: b.Checksum, Version: b.Version,
		ETag: f.ETag, LastModified: f.LastModified})
}

// PoolImage is the image of a build in one pool.
type PoolImage struct {
	PoolID  string
	ImageID string
	Status  string
	// Created: the image was made by this check, and its download is to
	// be started.
	Created bool
	Error   string // why the pool has no image of the build
}

// EnsureBuildImages makes sure each pool of the build has an image of
// it: an image already there (live or READY, of this build's source key,
// or READY with its checksum from a download before the subscription), or
// a new PENDING one, with the build's version, checksum and file name
// "{catalog_id}-{version}.{ext}". The store's unique index keeps it one
// per pool, whatever checks race.
func (a *Activities) EnsureBuildImages(ctx context.Context, b Build) ([]PoolImage, error) {
	src, err := source.Resolve(a.Catalog, source.Request{CatalogID: b.CatalogID, PoolID: "-", Version: b.Version, Checksum: b.Checksum})
	if err != nil {
		fe := fault.From(err)
		return nil, fatal(fe.Code, "%s", fe.Message)
	}
	out := make([]PoolImage, 0, len(b.PoolIDs))
	for _, poolID := range b.PoolIDs {
		pi, err := a.ensureBuildImage(ctx, b, src, poolID)
		if err != nil {
			return nil, err
		}
		out = append(out, pi)
	}
	return out, nil
}

func (a *Activities) ensureBuildImage(ctx context.Context, b Build, src source.Source, poolID string) (PoolImage, error) {
	pool, err := a.Store.Pool(ctx, poolID)
	if errors.Is(err, store.ErrNotFound) {
		return PoolImage{PoolID: poolID, Error: fmt.Sprintf("pool %q does not exist any more: remove it from the subscription or create it again", poolID)}, nil
	} else if err != nil {
		return PoolImage{}, err
	}
	if img, ok, err := a.Store.ReadyImageWithChecksum(ctx, poolID, b.CatalogID, b.Checksum); err != nil {
		return PoolImage{}, err
	} else if ok {
		return PoolImage{PoolID: poolID, ImageID: img.ID, Status: img.Status}, nil
	}
	id := uuid.NewString()
	img := &store.Image{ID: id, Name: src.Name, CatalogID: src.CatalogID, SourceURL: src.URL, SourceKey: src.SourceKey,
		PoolID: poolID, FileName: source.FileNameIn(src.FileName, pool.ImageFormat), Status: store.StatusPending,
		SizeBytes: src.SizeBytes, Checksum: src.Checksum, Version: src.Version, WorkflowID: contract.WorkflowID(id)}
	got, created, err := a.Store.CreateImage(ctx, img)
	switch {
	case errors.Is(err, store.ErrFileNameTaken):
		return PoolImage{PoolID: poolID, Error: err.Error()}, nil
	case errors.Is(err, store.ErrNotFound):
		return PoolImage{PoolID: poolID, Error: fmt.Sprintf("pool %q does not exist any more", poolID)}, nil
	case err != nil:
		return PoolImage{}, err
	}
	if created {
		a.event(ctx, store.SubscriptionEvent{SubscriptionID: b.SubscriptionID, Kind: store.EventDownload, PoolID: poolID,
			ImageID: got.ID, Version: b.Version, Message: fmt.Sprintf("downloading build %s into pool %s as %s", b.Version, poolID, got.FileName)})
	}
	return PoolImage{PoolID: poolID, ImageID: got.ID, Status: got.Status, Created: created}, nil
}

// WaitForImage waits until an image is terminal and returns its status:
// a check waits so for a download of its build that an earlier check
// started. It heartbeats while it waits.
func (a *Activities) WaitForImage(ctx context.Context, imageID string) (string, error) {
	for {
		img, err := a.Store.Image(ctx, imageID)
		if errors.Is(err, store.ErrNotFound) {
			return "", fatal(fault.NotFound, "image %q was deleted while the check waited for it", imageID)
		} else if err != nil {
			return "", err
		}
		if img.Terminal() {
			return img.Status, nil
		}
		activity.RecordHeartbeat(ctx, img.Status)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// LatestRequest asks for a pool's "{catalog_id}-latest.{format}" to name
// a READY image.
type LatestRequest struct {
	SubscriptionID string
	ImageID        string
}

// PublishLatest makes the pool's "{catalog_id}-latest.{format}" a hard
// link to the image's file, through a node agent of the pool, replacing
// the link before in one atomic step, and records it.
func (a *Activities) PublishLatest(ctx context.Context, in LatestRequest) (string, error) {
	img, err := a.Store.Image(ctx, in.ImageID)
	if err != nil {
		return "", asStoreError(err)
	}
	if img.Status != store.StatusReady {
		return "", fatal(fault.Conflict, "image %q is %s, not READY: -latest names only a READY image", img.ID, img.Status)
	}
	name := source.LatestFileName(img.CatalogID, formatOf(img))
	nodes, err := a.fileNodes(ctx, img)
	if err != nil {
		return "", err
	}
	var failures []string
	for _, n := range nodes {
		c := a.client(n)
		cctx, cancel := context.WithTimeout(ctx, fileTimeout)
		h, err := c.Health(cctx)
		if err == nil && !h.Supports(agentclient.FeatureLink) {
			err = errors.New("its agent is too old to publish links: upgrade it")
		}
		if err == nil {
			_, err = c.Link(cctx, img.PoolID, name, img.FileName)
		}
		cancel()
		if err == nil {
			if err := a.Store.SetLatestLink(ctx, store.LatestLink{PoolID: img.PoolID, FileName: name, CatalogID: img.CatalogID, ImageID: img.ID}); err != nil {
				return "", err
			}
			a.event(ctx, store.SubscriptionEvent{SubscriptionID: in.SubscriptionID, Kind: store.EventLatest, PoolID: img.PoolID,
				ImageID: img.ID, Version: img.Version, Message: fmt.Sprintf("%s now names %s", name, img.FileName)})
			activity.GetLogger(ctx).Info("latest published", "image_id", img.ID, "pool_id", img.PoolID, "node_id", n.ID, "name", name)
			return name, nil
		}
		failures = append(failures, fmt.Sprintf("%s: %v", n.ID, err))
	}
	return "", retryable(fault.NodeUnreachable, "no node could publish %s in pool %q: %s", name, img.PoolID, strings.Join(failures, "; "))
}

// formatOf is the disk format of a READY image's file: what the node
// found, else what its extension says.
func formatOf(img store.Image) string {
	if img.Format != "" {
		return img.Format
	}
	if i := strings.LastIndexByte(img.FileName, '.'); i >= 0 {
		return img.FileName[i+1:]
	}
	return "img"
}

// RetentionRequest asks which versions of a catalog entry in a pool are
// past a subscription's keep.
type RetentionRequest struct {
	SubscriptionID string
	PoolID         string
	CatalogID      string
	Keep           int
}

// Removal is an image that retention removes.
type Removal struct {
	ImageID  string
	Version  string
	FileName string
}

// PlanRetention lists the READY versions of the entry in the pool past
// the newest Keep. Pinned images do not count and are never listed, nor
// is the one a -latest link names.
func (a *Activities) PlanRetention(ctx context.Context, in RetentionRequest) ([]Removal, error) {
	imgs, err := a.Store.ReadyVersions(ctx, in.PoolID, in.CatalogID)
	if err != nil {
		return nil, err
	}
	latest, err := a.Store.LatestImageIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Removal
	kept := 0
	for _, img := range imgs {
		if img.Pinned {
			continue
		}
		kept++
		if kept <= in.Keep || latest[img.ID] {
			continue
		}
		out = append(out, Removal{ImageID: img.ID, Version: img.Version, FileName: img.FileName})
	}
	return out, nil
}

// EventRequest records one thing a check did.
type EventRequest = store.SubscriptionEvent

// EventRemoved is the kind of the event that records a removal by
// retention (the workflow names it without importing the store).
const EventRemoved = store.EventRemoved

// RecordEvent records one thing a check did.
func (a *Activities) RecordEvent(ctx context.Context, e EventRequest) error {
	return a.Store.AddSubscriptionEvent(ctx, e)
}

// OutcomeRequest records how a check ended.
type OutcomeRequest struct {
	SubscriptionID string
	// Version and Checksum are the build now current in every pool; empty
	// when some pool does not have it.
	Version  string
	Checksum string
	Error    string
}

// RecordOutcome records how a check ended on the subscription.
func (a *Activities) RecordOutcome(ctx context.Context, in OutcomeRequest) error {
	if in.Error != "" {
		a.event(ctx, store.SubscriptionEvent{SubscriptionID: in.SubscriptionID, Kind: store.EventError, Message: in.Error})
	}
	err := a.Store.RecordOutcome(ctx, in.SubscriptionID, in.Version, in.Checksum, in.Error)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted meanwhile
	}
	return err
}

// event records a subscription event, best effort: losing one must not
// fail the step that did the thing.
func (a *Activities) event(ctx context.Context, e store.SubscriptionEvent) {
	if err := a.Store.AddSubscriptionEvent(ctx, e); err != nil {
		activity.GetLogger(ctx).Warn("record subscription event", "subscription_id", e.SubscriptionID, "kind", e.Kind, "error", err)
	}
}
