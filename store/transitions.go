package store

import (
	"context"
	"fmt"
	"time"

	"github.com/quantix/cloudimages/imagestate"
)

// A Transition moves an image to a status, with the fields that go with
// that status. The types below are all there are: callers say what
// happened, and only this file knows which columns that touches.
type Transition interface {
	// Status is the status the image moves to.
	Status() string
	fields() map[string]any
}

// ToDownloading: a node started (or resumed) the image's download.
type ToDownloading struct {
	NodeID     string
	Attempt    int
	Path       string // where the node writes the image
	BytesDone  int64  // what the node had already, when it resumes
	BytesTotal int64
}

// Status implements Transition.
func (ToDownloading) Status() string { return StatusDownloading }

func (t ToDownloading) fields() map[string]any {
	return notWaiting(map[string]any{"node_id": t.NodeID, "progress_node_id": t.NodeID, "attempt": t.Attempt, "path": t.Path,
		"bytes_done": t.BytesDone, "bytes_total": t.BytesTotal})
}

// ToWaiting: the download waits for its pool's next transfer window,
// before it starts or paused (its partial data kept) at the end of one.
// The status is PENDING again.
type ToWaiting struct {
	Until   time.Time
	Message string
}

// Status implements Transition.
func (ToWaiting) Status() string { return StatusPending }

func (t ToWaiting) fields() map[string]any {
	until := t.Until.UTC()
	return map[string]any{"waiting_until": &until, "waiting_message": t.Message, "bytes_per_second": 0}
}

// notWaiting clears a wait for a transfer window: every status but
// PENDING is past it.
func notWaiting(set map[string]any) map[string]any {
	set["waiting_until"], set["waiting_message"] = nil, ""
	return set
}

// ToVerifying: the node has every byte and checks the image.
type ToVerifying struct {
	NodeID string
}

// Status implements Transition.
func (ToVerifying) Status() string { return StatusVerifying }

func (t ToVerifying) fields() map[string]any {
	return map[string]any{"node_id": t.NodeID, "bytes_per_second": 0}
}

// ToConverting: the node has verified and inspected the image and converts
// it to the pool's format. Nothing unverified is converted, so it comes from
// VERIFYING (or DOWNLOADING, when the node's VERIFYING was not seen).
type ToConverting struct {
	NodeID string
}

// Status implements Transition.
func (ToConverting) Status() string { return StatusConverting }

func (t ToConverting) fields() map[string]any {
	return map[string]any{"node_id": t.NodeID, "bytes_per_second": 0}
}

// ToReady: the whole image is at Path and verified. Checksum is of the
// bytes downloaded (the source's, also recorded as source_checksum);
// FileChecksum of the published file, which differs when the source was
// compressed. Format, VirtualSizeBytes and Compression are what the node
// found; a node from before they were reported leaves them empty.
type ToReady struct {
	NodeID           string
	Path             string
	SizeBytes        int64
	Checksum         string
	Format           string
	VirtualSizeBytes int64
	Compression      string
	FileChecksum     string
	Failovers        []Failover
	// Mirrors, when the node said, are the final bytes each mirror served.
	Mirrors []imagestate.MirrorBytes
}

// Status implements Transition.
func (ToReady) Status() string { return StatusReady }

func (t ToReady) fields() map[string]any {
	m := map[string]any{"node_id": t.NodeID, "path": t.Path, "size_bytes": t.SizeBytes, "checksum": t.Checksum,
		"source_checksum": t.Checksum, "file_checksum": t.FileChecksum, "format": t.Format,
		"virtual_size_bytes": t.VirtualSizeBytes, "compression": t.Compression, "bytes_done": t.SizeBytes, "bytes_total": t.SizeBytes, "bytes_per_second": 0,
		"progress_node_id": t.NodeID, "error_code": "", "error_message": "",
		"failovers": Failovers(t.Failovers), "ready_at": time.Now().UTC(), "waiting_until": nil, "waiting_message": ""}
	if t.Mirrors != nil {
		m["mirror_bytes"] = MirrorBytes(t.Mirrors)
	}
	return m
}

// ToFailed: the download ended with an error of the contract.
type ToFailed struct {
	Code      string
	Message   string
	Failovers []Failover
}

// Status implements Transition.
func (ToFailed) Status() string { return StatusFailed }

func (t ToFailed) fields() map[string]any {
	return notWaiting(map[string]any{"error_code": t.Code, "error_message": t.Message, "bytes_per_second": 0,
		"failovers": Failovers(t.Failovers)})
}

// CancelledCode is the error code of a CANCELLED image (fault.Cancelled;
// the store does not import the fault package).
const CancelledCode = "cancelled"

// ToCancelled: the download was cancelled.
type ToCancelled struct {
	Failovers []Failover
}

// Status implements Transition.
func (ToCancelled) Status() string { return StatusCancelled }

func (t ToCancelled) fields() map[string]any {
	return notWaiting(map[string]any{"error_code": CancelledCode, "error_message": "the download was cancelled",
		"bytes_per_second": 0, "failovers": Failovers(t.Failovers)})
}

// allowedFrom says, for each status, the statuses an image may come from.
// READY, FAILED and CANCELLED are terminal: nothing leaves them, so a READY
// image never goes back to DOWNLOADING and a CANCELLED one never becomes READY.
var allowedFrom = map[string][]string{
	// PENDING again: a download paused at the end of its transfer window.
	StatusPending:     {StatusPending, StatusDownloading},
	StatusDownloading: live,
	StatusVerifying:   live,
	StatusConverting:  {StatusDownloading, StatusVerifying},
	StatusReady:       live,
	StatusFailed:      live,
	StatusCancelled:   live,
}

var live = []string{StatusPending, StatusDownloading, StatusVerifying, StatusConverting}

// Transition moves an image as t says, if the move is allowed from its
// current status. Moving to the status it already has is fine (activities
// retry); any other refused move is ErrTransition, and an unknown image
// ErrNotFound.
func (s *Store) Transition(ctx context.Context, id string, t Transition) error {
	to := t.Status()
	set := t.fields()
	set["status"] = to
	res := s.db.WithContext(ctx).Model(&Image{}).Where("id = ? AND status IN ?", id, allowedFrom[to]).Updates(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected > 0 {
		return nil
	}
	cur, err := s.Image(ctx, id)
	if err != nil {
		return err
	}
	if cur.Status == to {
		return nil
	}
	return fmt.Errorf("image %q is %s and cannot become %s: %w", id, cur.Status, to, ErrTransition)
}

// RecordFailovers records the failovers of a live download so far; the
// workflow calls it at each one, so readers see them while it runs. A
// terminal image is ErrTransition.
func (s *Store) RecordFailovers(ctx context.Context, id string, f []Failover) error {
	return s.updateLive(ctx, id, "record failovers", map[string]any{"failovers": Failovers(f)})
}

// RecordChecksum records the checksum a download verifies against, or
// that it has none (unverified), and what the signature of the checksum
// file said, while the image is live.
func (s *Store) RecordChecksum(ctx context.Context, id, checksum string, unverified bool, signature string) error {
	return s.updateLive(ctx, id, "record the checksum", map[string]any{"checksum": checksum, "unverified": unverified, "signature": signature})
}

// RecordWorkflow records the id of the workflow that downloads a live image.
func (s *Store) RecordWorkflow(ctx context.Context, id, workflowID string) error {
	return s.updateLive(ctx, id, "record the workflow", map[string]any{"workflow_id": workflowID})
}

func (s *Store) updateLive(ctx context.Context, id, what string, set map[string]any) error {
	res := s.db.WithContext(ctx).Model(&Image{}).Where("id = ? AND status IN ?", id, live).Updates(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected > 0 {
		return nil
	}
	cur, err := s.Image(ctx, id)
	if err != nil {
		return err
	}
	if !cur.Terminal() {
		return nil // the same values again: nothing changed
	}
	return fmt.Errorf("image %q is %s: cannot %s: %w", id, cur.Status, what, ErrTransition)
}
