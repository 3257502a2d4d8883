// Package contract is the Temporal side of the contract: the task queue,
// workflow types and ids, inputs, results, queries, signals and search
// attributes that whoever starts or asks a workflow needs — the API among
// them. It holds no workflow code, so importing it does not pull in the
// activities or the node agent's client (the API talks to no agent).
package contract

import (
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/imagestate"
)

// TaskQueue is where the worker polls for download workflows and activities.
const TaskQueue = "image-downloads"

// WorkflowType is the registered name of DownloadImageWorkflow.
const WorkflowType = "DownloadImageWorkflow"

// ProgressQuery is the name of the query that returns a ProgressState.
const ProgressQuery = "progress"

// WorkflowID is the workflow id of the download of an image.
func WorkflowID(imageID string) string { return "image-" + imageID }

// ImageIDFromWorkflowID is the inverse of WorkflowID; a workflow started
// from the temporal CLI takes its image id from its workflow id this way.
func ImageIDFromWorkflowID(workflowID string) string {
	return strings.TrimPrefix(workflowID, "image-")
}

// Input starts a download: a catalog entry or a URL, into a pool.
type Input struct {
	ImageID         string `json:"image_id"`
	CatalogID       string `json:"catalog_id"`
	URL             string `json:"url"`
	Name            string `json:"name"`
	Checksum        string `json:"checksum"`
	PoolID          string `json:"pool_id"`
	PreferredNodeID string `json:"preferred_node_id"`
	// AllowUnverified accepts an image for which no checksum can be had;
	// the image then records that it was not verified.
	AllowUnverified bool `json:"allow_unverified,omitempty"`
	// Format is the disk format the request declared (one of
	// diskimage.Formats); empty lets a catalog entry's, or the bytes, decide.
	Format string `json:"format,omitempty"`
	// Credential names a source credential defined on the worker
	// (--credentials), sent to the mirror's host with the node-side job.
	// Only the name is here: the secret never enters the history.
	Credential string `json:"credential,omitempty"`
	// MaxBytesPerSecond caps this download's rate on the node (0: none);
	// agents that do not support it (agentclient.FeatureBandwidthLimit)
	// download without the cap.
	MaxBytesPerSecond int64 `json:"max_bytes_per_second,omitempty"`
	// Version names one build of the catalog entry, whose checksum is
	// Checksum: the image is that build (source key "catalog:ID@CHECKSUM",
	// file "{catalog_id}-{version}.{ext}"), as a subscription starts it.
	Version string `json:"version,omitempty"`
	// Signature, with Version, is what the signature of the checksum file
	// that named Checksum said when the subscription's check fetched it
	// ("verified", "unsigned", "not_checked"): the build's image records it
	// rather than "unsigned", which a checksum given in a request means.
	Signature string `json:"signature,omitempty"`
	// Peers are READY copies (image ids) of the same source that a
	// distribution's copy reads from, in that order, instead of the mirror:
	// one whose node dies mid-copy is left for the next, then the mirror.
	// Only agents that support it (agentclient.FeaturePeerCopy) copy from
	// peers; others download from the mirror.
	Peers []string `json:"peers,omitempty"`
	// SourceImageID, instead of a catalog entry or URL, makes the download
	// a copy of that READY image (a distribution of an upload): its source
	// is the image's, its bytes come only from Peers, and there is no
	// mirror to fall back to when none of them can be read.
	SourceImageID string `json:"source_image_id,omitempty"`
	// DistributionID names the distribution that started the download.
	DistributionID string `json:"distribution_id,omitempty"`
}

// Result is what a successful download returns. Checksum is of the
// source bytes; FileChecksum and Format are of the published file, as the
// node found them (empty from an agent that does not report them).
type Result struct {
	ImageID      string `json:"image_id"`
	NodeID       string `json:"node_id"`
	Path         string `json:"path"`
	SizeBytes    int64  `json:"size_bytes"`
	Checksum     string `json:"checksum"`
	FileChecksum string `json:"file_checksum,omitempty"`
	Format       string `json:"format,omitempty"`
	// Signature is what the signature of the vendor's checksum file said:
	// "verified", "unsigned" or "not_checked".
	Signature string `json:"signature,omitempty"`
	// SourceNodeID is the node whose copy the file was copied from; empty
	// when it came from the mirror.
	SourceNodeID string `json:"source_node_id,omitempty"`
}

// Progress is the live progress of a download, the same in the API, the
// progress query and Temporal Web.
type Progress struct {
	BytesDone      int64   `json:"bytes_done"`
	BytesTotal     int64   `json:"bytes_total"`
	Percent        float64 `json:"percent"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	ETASeconds     *int64  `json:"eta_seconds"`
	Attempt        int     `json:"attempt"`
	NodeID         string  `json:"node_id"`
	// WaitingUntil is set while a PENDING download waits for its pool's
	// next transfer window: when it starts (or resumes) then, and Message
	// says so ("waiting for a transfer window (22:00-06:00 Europe/Berlin)
	// until …"); or while one not started yet waits for a node of its
	// pool: until when it waits before it fails with no_node_available,
	// and Message says why each node is refused ("waiting for a node of
	// pool … until …"). Absent otherwise.
	WaitingUntil *time.Time `json:"waiting_until,omitempty"`
	Message      string     `json:"message,omitempty"`
	// Mirrors says how many bytes each URL of the download served (the
	// catalog entry's url, then its mirrors), once the node reports it.
	Mirrors []imagestate.MirrorBytes `json:"mirrors,omitempty"`
}

// NewProgress fills in percent and ETA from the raw figures.
func NewProgress(done, total int64, rate float64, attempt int, nodeID string) Progress {
	p := Progress{BytesDone: done, BytesTotal: total, BytesPerSecond: rate, Attempt: attempt, NodeID: nodeID}
	if total > 0 {
		p.Percent = float64(int64(float64(done)*10000/float64(total))) / 100
		if rate > 0 && done <= total {
			eta := int64(float64(total-done)/rate + 0.5)
			p.ETASeconds = &eta
		}
	}
	return p
}

// Failover records one move of a download from a node to another; the
// image record keeps them once the download ends.
type Failover = imagestate.Failover

// ProgressState is the answer to the progress query.
type ProgressState struct {
	Status    string     `json:"status"`
	NodeID    string     `json:"node_id"`
	Progress  Progress   `json:"progress"`
	Failovers []Failover `json:"failovers"`
}

// Search attributes kept current on every download workflow, so that
// `temporal workflow list --query 'PoolId="nfs-01"'` works.
var (
	ImageIDKey     = temporal.NewSearchAttributeKeyKeyword("ImageId")
	PoolIDKey      = temporal.NewSearchAttributeKeyKeyword("PoolId")
	NodeIDKey      = temporal.NewSearchAttributeKeyKeyword("NodeId")
	CatalogIDKey   = temporal.NewSearchAttributeKeyKeyword("CatalogId")
	ImageStatusKey = temporal.NewSearchAttributeKeyKeyword("ImageStatus")
	// SubscriptionIDKey is set on a subscription's refresh runs and on the
	// downloads they start: `temporal workflow list --query
	// 'SubscriptionId="ID"'` finds them all.
	SubscriptionIDKey = temporal.NewSearchAttributeKeyKeyword("SubscriptionId")
)

// SearchAttributeNames lists the Keyword search attributes the workflows
// use; the dev server is started with them and the worker registers any
// that are missing.
var SearchAttributeNames = []string{ImageIDKey.GetName(), PoolIDKey.GetName(), NodeIDKey.GetName(),
	CatalogIDKey.GetName(), ImageStatusKey.GetName(), SubscriptionIDKey.GetName(), DistributionIDKey.GetName()}

// RefreshWorkflowType is the registered name of RefreshImageWorkflow.
const RefreshWorkflowType = "RefreshImageWorkflow"

// ScheduleID is the id of the Temporal Schedule of a subscription.
func ScheduleID(subscriptionID string) string { return "subscription-" + subscriptionID }

// RefreshWorkflowID is the workflow id the schedule gives its runs (it
// appends the time of each); a run started by hand uses it too.
func RefreshWorkflowID(subscriptionID string) string { return "refresh-" + subscriptionID }

// RefreshInput starts RefreshImageWorkflow: the subscription to check.
type RefreshInput struct {
	SubscriptionID string `json:"subscription_id"`
}

// RefreshResult says what a check found and did.
type RefreshResult struct {
	SubscriptionID string `json:"subscription_id"`
	// Skipped says why nothing was checked ("paused", "deleted"), if so.
	Skipped     string `json:"skipped,omitempty"`
	Version     string `json:"version,omitempty"`
	Checksum    string `json:"checksum,omitempty"`
	NotModified bool   `json:"not_modified,omitempty"`
	// Downloaded, Linked and Removed list the image ids a download was
	// started for, whose file -latest now names, and that retention removed.
	Downloaded []string `json:"downloaded,omitempty"`
	Linked     []string `json:"linked,omitempty"`
	Removed    []string `json:"removed,omitempty"`
	Errors     []string `json:"errors,omitempty"`
}

// RemoveFileWorkflowType is the registered name of RemoveImageFileWorkflow.
const RemoveFileWorkflowType = "RemoveImageFileWorkflow"

// RemoveFileWorkflowID is the workflow id of the removal of an image's
// file: one per image, so two DELETEs of one image share one removal.
func RemoveFileWorkflowID(imageID string) string { return "remove-file-" + imageID }

// RemoveFileInput asks for a READY image to be removed. With Force, a
// file that no node can remove is left behind and the record is deleted
// all the same.
type RemoveFileInput struct {
	ImageID string `json:"image_id"`
	Force   bool   `json:"force,omitempty"`
}

// RemoveFileResult says how the removal ended: FileRemoved is false when
// Force left the file behind, and LeftBehind says why.
type RemoveFileResult struct {
	ImageID     string `json:"image_id"`
	NodeID      string `json:"node_id,omitempty"` // the node that removed the file
	FileRemoved bool   `json:"file_removed"`
	LeftBehind  string `json:"left_behind,omitempty"`
}

// NodeHealthWorkflowType is the registered name of NodeHealthWorkflow.
const NodeHealthWorkflowType = "NodeHealthWorkflow"

// NodeHealthWorkflowID is the one id of NodeHealthWorkflow: every worker
// starts it under this id, and Temporal runs at most one workflow per id,
// so the nodes are checked once per cluster however many workers run.
const NodeHealthWorkflowID = "node-health"

// NodeHealthSignal asks NodeHealthWorkflow to check every node now, and
// to use the interval it carries from then on (when it carries one).
const NodeHealthSignal = "check-nodes"

// NodeHealthInput starts NodeHealthWorkflow, and the signal carries the
// same: the interval between two rounds of checks.
type NodeHealthInput struct {
	Interval time.Duration `json:"interval,omitempty"`
}

// UploadWorkflowType is the registered name of UploadImageWorkflow. An
// upload's workflow has the id of any image's, WorkflowID(image id), so
// cancelling, describing and the progress query work alike.
const UploadWorkflowType = "UploadImageWorkflow"

// UploadInput starts the workflow of an upload, whose image record the API
// has created (status PENDING, source "upload").
type UploadInput struct {
	ImageID   string `json:"image_id"`
	PoolID    string `json:"pool_id"`
	Name      string `json:"name"`
	FileName  string `json:"file_name"`
	Checksum  string `json:"checksum,omitempty"` // empty: the node computes it
	Format    string `json:"format,omitempty"`
	SizeBytes int64  `json:"size_bytes"`
	// TTL is how long the upload may go without receiving a byte before it
	// expires (FAILED upload_expired, its partial data removed).
	TTL time.Duration `json:"ttl"`
}
