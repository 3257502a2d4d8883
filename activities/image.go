package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
)

// ImageRequest asks for the image record of a download.
type ImageRequest struct {
	ImageID    string
	WorkflowID string
	PoolID     string
	Source     source.Source
}

// Plan is what the workflow needs to know about the image, its pool and
// the timings it runs with (recorded in history, so that a replay sees the
// values the run had).
type Plan struct {
	ImageID       string
	PoolID        string
	FileName      string
	Shared        bool     // every node of the pool sees the same directory
	AssignedNodes []string // the nodes assigned to the pool
	// ImageFormat is the format the pool wants its images in ("raw",
	// "qcow2"); "" keeps what the vendor ships.
	ImageFormat      string
	NoNodeTimeout    time.Duration
	HeartbeatTimeout time.Duration
	// TransferWindows ("22:00-06:00", …) in TimeZone (IANA) are when the
	// download may transfer: the pool's own, or else the cluster's
	// default. None: any time.
	TransferWindows []string `json:",omitempty"`
	TimeZone        string   `json:",omitempty"`
}

// EnsureImage makes sure the image record exists: the API creates it
// before it starts the workflow; a workflow started from the temporal CLI
// creates its own. A live or READY image of the same source in the pool
// stops the download: there is never a second one.
func (a *Activities) EnsureImage(ctx context.Context, in ImageRequest) (Plan, error) {
	pool, err := a.Store.Pool(ctx, in.PoolID)
	if errors.Is(err, store.ErrNotFound) {
		return Plan{}, fatal(fault.PoolNotFound, "pool %q does not exist: create it (POST /v1/pools) or pick another", in.PoolID)
	} else if err != nil {
		return Plan{}, err
	}
	img, err := a.Store.Image(ctx, in.ImageID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		img, err = a.createImage(ctx, in, pool.ImageFormat)
		if err != nil {
			return Plan{}, err
		}
	case err != nil:
		return Plan{}, err
	case img.Terminal():
		return Plan{}, fatal(fault.Conflict, "image %q is already %s", img.ID, img.Status)
	case img.PoolID != in.PoolID:
		return Plan{}, fatal(fault.Conflict, "image %q belongs to pool %q, not %q", img.ID, img.PoolID, in.PoolID)
	default:
		if err := a.Store.RecordWorkflow(ctx, img.ID, in.WorkflowID); err != nil {
			return Plan{}, asStoreError(err)
		}
	}
	s := a.settings()
	windows, zone := []string(pool.TransferWindows), pool.TimeZone
	if len(windows) == 0 {
		windows, zone = s.TransferWindows, s.TransferTimeZone
	}
	return Plan{ImageID: img.ID, PoolID: pool.ID, FileName: img.FileName, Shared: pool.Shared,
		AssignedNodes: pool.NodeIDs(), ImageFormat: pool.ImageFormat, NoNodeTimeout: s.NoNodeTimeout, HeartbeatTimeout: s.HeartbeatTimeout,
		TransferWindows: windows, TimeZone: zone}, nil
}

func (a *Activities) createImage(ctx context.Context, in ImageRequest, poolFormat string) (store.Image, error) {
	src := in.Source
	img := &store.Image{ID: in.ImageID, Name: src.Name, CatalogID: src.CatalogID, SourceURL: src.URL,
		SourceKey: src.SourceKey, PoolID: in.PoolID, FileName: source.FileNameIn(src.FileName, poolFormat), Status: store.StatusPending,
		SizeBytes: src.SizeBytes, Checksum: src.Checksum, WorkflowID: in.WorkflowID, Credential: src.Credential,
		Version: src.Version}
	if src.CatalogID == "" {
		img.DeclaredFormat = src.Format // a catalog entry declares its own
	}
	got, created, err := a.Store.CreateImage(ctx, img)
	switch {
	case errors.Is(err, store.ErrFileNameTaken):
		return got, fatal(fault.Conflict, "%v: give the image another name", err)
	case errors.Is(err, store.ErrExists):
		// Created by an earlier attempt of this activity that then lost
		// its answer; it is ours.
		return a.Store.Image(ctx, in.ImageID)
	case err != nil:
		return got, err
	case !created && got.ID != in.ImageID:
		return got, fatal(fault.Conflict, "pool %q already has image %q (%s) of this source: see workflow %s",
			in.PoolID, got.ID, got.Status, got.WorkflowID)
	}
	activity.GetLogger(ctx).Info("image record created", "image_id", got.ID, "pool_id", got.PoolID)
	return got, nil
}

// The workflow owns an image's status and failovers: it records each
// change through the local activities below, one typed store transition
// each. The watch records only byte progress; the API only creates the
// PENDING record.

// DownloadingRequest records that a node started (or resumed) the download.
type DownloadingRequest struct {
	ImageID    string
	NodeID     string
	Attempt    int
	Path       string
	BytesDone  int64
	BytesTotal int64
}

// MarkDownloading records that the image downloads on a node.
func (a *Activities) MarkDownloading(ctx context.Context, in DownloadingRequest) error {
	err := a.Store.Transition(ctx, in.ImageID, store.ToDownloading{NodeID: in.NodeID, Attempt: in.Attempt, Path: in.Path,
		BytesDone: in.BytesDone, BytesTotal: in.BytesTotal})
	return asStoreError(err)
}

// WaitingRequest records that the download waits for its pool's next
// transfer window, until Until.
type WaitingRequest struct {
	ImageID string
	Until   time.Time
	Message string
}

// MarkWaiting records that the image is PENDING until its pool's next
// transfer window (before it starts, or paused at the end of a window),
// or, before it starts, waiting for a node of its pool until a deadline.
func (a *Activities) MarkWaiting(ctx context.Context, in WaitingRequest) error {
	err := a.Store.Transition(ctx, in.ImageID, store.ToWaiting{Until: in.Until, Message: in.Message})
	if err != nil {
		return asStoreError(err)
	}
	activity.GetLogger(ctx).Info("waiting", "image_id", in.ImageID, "until", in.Until, "message", in.Message)
	return nil
}

// VerifyingRequest records that a node checks the downloaded image (or,
// for MarkConverting, converts it).
type VerifyingRequest struct {
	ImageID string
	NodeID  string
}

// MarkVerifying records that the node has every byte and verifies them.
func (a *Activities) MarkVerifying(ctx context.Context, in VerifyingRequest) error {
	return asStoreError(a.Store.Transition(ctx, in.ImageID, store.ToVerifying{NodeID: in.NodeID}))
}

// MarkConverting records that the node converts the verified image to the
// pool's format.
func (a *Activities) MarkConverting(ctx context.Context, in VerifyingRequest) error {
	return asStoreError(a.Store.Transition(ctx, in.ImageID, store.ToConverting{NodeID: in.NodeID}))
}

// FailoversRequest records the failovers of a download so far.
type FailoversRequest struct {
	ImageID   string
	Failovers []store.Failover
}

// RecordFailovers records the download's failovers at each one, so that
// the API shows them while it runs.
func (a *Activities) RecordFailovers(ctx context.Context, in FailoversRequest) error {
	return asStoreError(a.Store.RecordFailovers(ctx, in.ImageID, in.Failovers))
}

// ReadyRequest marks a downloaded image READY with what the node reported
// when it finished (Checksum of the source bytes, FileChecksum of the
// file) and the download's failovers.
type ReadyRequest struct {
	ImageID string
	Finished
	Failovers []store.Failover
	// Source is where the bytes came from when not the mirror
	// (store.SourcePeer for a copy from another node).
	Source string `json:",omitempty"`
}

// MarkReady records that the whole image is at Path and verified.
func (a *Activities) MarkReady(ctx context.Context, in ReadyRequest) error {
	err := a.Store.Transition(ctx, in.ImageID, store.ToReady{NodeID: in.NodeID, Path: in.Path, SizeBytes: in.SizeBytes,
		Checksum: in.Checksum, Format: in.Format, VirtualSizeBytes: in.VirtualSizeBytes, Compression: in.Compression,
		FileChecksum: in.FileChecksum, Failovers: in.Failovers, Mirrors: in.Mirrors})
	if err != nil {
		return asStoreError(err)
	}
	if in.Source != "" {
		if err := a.Store.SetImageSource(ctx, in.ImageID, in.Source); err != nil {
			return asStoreError(err)
		}
	}
	activity.GetLogger(ctx).Info("image ready", "image_id", in.ImageID, "node_id", in.NodeID, "path", in.Path,
		"format", in.Format, "compression", in.Compression)
	return nil
}

// FailRequest marks an image FAILED with a contract code.
type FailRequest struct {
	ImageID   string
	Code      string
	Message   string
	Failovers []store.Failover
}

// MarkFailed records the failure. An image that is gone or already
// terminal is left as it is.
func (a *Activities) MarkFailed(ctx context.Context, in FailRequest) error {
	err := a.Store.Transition(ctx, in.ImageID, store.ToFailed{Code: in.Code, Message: in.Message, Failovers: in.Failovers})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrTransition) {
		activity.GetLogger(ctx).Warn("image not marked failed", "image_id", in.ImageID, "error", err)
		return nil
	}
	if err == nil {
		activity.GetLogger(ctx).Warn("image failed", "image_id", in.ImageID, "code", in.Code, "message", in.Message)
	}
	return err
}

// CancelledRequest marks an image CANCELLED.
type CancelledRequest struct {
	ImageID   string
	Failovers []store.Failover
}

// MarkCancelled records that the download was cancelled. An image that is
// gone or already terminal is left as it is.
func (a *Activities) MarkCancelled(ctx context.Context, in CancelledRequest) error {
	err := a.Store.Transition(ctx, in.ImageID, store.ToCancelled{Failovers: in.Failovers})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrTransition) {
		return nil
	}
	return err
}

func asStoreError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrTransition):
		return fatal(fault.Conflict, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return fatal(fault.NotFound, "%v: the image record was deleted", err)
	}
	return err
}
