package api

import (
	"time"

	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// list is the envelope of every list answer: {"items": [...]}.
type list[T any] struct {
	Items []T `json:"items"`
}

func listOf[T any](items []T) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items}
}

// Node is a Node as the contract shows it; Client returns it too.
type Node struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Address         string     `json:"address"`
	Status          string     `json:"status"`
	LastSeenAt      *time.Time `json:"last_seen_at"`
	Pools           []string   `json:"pools"`
	ActiveDownloads int        `json:"active_downloads"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

func viewNode(n store.Node) Node {
	pools := []string(n.Pools)
	if pools == nil {
		pools = []string{}
	}
	return Node{ID: n.ID, Name: n.Name, Address: n.Address, Status: n.Status, LastSeenAt: n.LastSeenAt,
		Pools: pools, ActiveDownloads: n.ActiveDownloads, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt}
}

// Pool is a Pool as the contract shows it; Client returns it too.
type Pool struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Shared  bool     `json:"shared"`
	NodeIDs []string `json:"node_ids"`
	// ImageFormat is the format the pool's images are converted to; ""
	// keeps what the vendor ships.
	ImageFormat string `json:"image_format"`
	// TransferWindows and TimeZone: when the pool's downloads may
	// transfer; [] means any time (or the worker's default).
	TransferWindows []string `json:"transfer_windows"`
	TimeZone        string   `json:"time_zone"`
	// Free and total bytes, from the online node with the most free space
	// in the pool (on a shared pool they all see the same); absent until a
	// node's agent has reported the pool.
	FreeBytes  *uint64   `json:"free_bytes,omitempty"`
	TotalBytes *uint64   `json:"total_bytes,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func viewPool(p store.Pool, nodes []store.Node) Pool {
	v := Pool{ID: p.ID, Name: p.Name, Type: p.Type, Shared: p.Shared, NodeIDs: p.NodeIDs(),
		ImageFormat: p.ImageFormat, TransferWindows: []string(p.TransferWindows), TimeZone: p.TimeZone,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if v.TransferWindows == nil {
		v.TransferWindows = []string{}
	}
	for _, n := range nodes {
		sp, ok := n.PoolSpace[p.ID]
		if !ok || n.Status != store.NodeOnline || (v.FreeBytes != nil && sp.FreeBytes <= *v.FreeBytes) {
			continue
		}
		v.FreeBytes, v.TotalBytes = &sp.FreeBytes, &sp.TotalBytes
	}
	return v
}

// Image is an Image as the contract shows it, plus "unverified" and
// "failovers": of a finished image from the store, of one live image that
// failed over from its workflow.
type Image struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	CatalogID  string `json:"catalog_id"`
	SourceURL  string `json:"source_url"`
	PoolID     string `json:"pool_id"`
	NodeID     string `json:"node_id"`
	FileName   string `json:"file_name"`
	Path       string `json:"path"`
	Status     string `json:"status"`
	SizeBytes  int64  `json:"size_bytes"`
	Checksum   string `json:"checksum"`
	Unverified bool   `json:"unverified"`
	// Credential names the worker's source credential the download uses.
	Credential string `json:"credential,omitempty"`
	// Signature is what the signature of the vendor's checksum file said:
	// "verified", "unsigned" or "not_checked" (also while the checksum is
	// not resolved yet, and for images from before signatures were checked).
	Signature string `json:"signature"`
	// Source is where the bytes came from: "mirror", "peer" or "upload".
	Source string `json:"source"`

	// What the node found once it published the file; empty (null) until
	// the image is READY. Checksum and SourceChecksum are of the bytes
	// downloaded, FileChecksum of the file as written.
	Format           string `json:"format"`
	VirtualSizeBytes *int64 `json:"virtual_size_bytes"`
	Compression      string `json:"compression"`
	SourceChecksum   string `json:"source_checksum"`
	FileChecksum     string `json:"file_checksum"`

	Progress   contract.Progress   `json:"progress"`
	Error      *ErrorDetail        `json:"error"`
	WorkflowID string              `json:"workflow_id"`
	CreatedAt  time.Time           `json:"created_at"`
	UpdatedAt  time.Time           `json:"updated_at"`
	ReadyAt    *time.Time          `json:"ready_at"`
	Failovers  []contract.Failover `json:"failovers,omitempty"`

	// Version is the vendor build ("41-1.4"), or the first 12 hex digits
	// of the checksum; "" until the checksum is known. Pinned images are
	// never removed by a subscription's retention. Latest says a pool's
	// "{catalog_id}-latest.{format}" names this image's file.
	Version string `json:"version"`
	Pinned  bool   `json:"pinned"`
	Latest  bool   `json:"latest"`
}

// Terminal reports whether the image's status can no longer change.
func (i Image) Terminal() bool { return store.IsTerminal(i.Status) }

func viewImage(img store.Image) Image {
	v := Image{ID: img.ID, Name: img.Name, CatalogID: img.CatalogID, SourceURL: img.SourceURL,
		PoolID: img.PoolID, NodeID: img.NodeID, FileName: img.FileName, Path: img.Path, Status: img.Status,
		SizeBytes: img.SizeBytes, Checksum: img.Checksum, Unverified: img.Unverified, Signature: signatureOf(img), WorkflowID: img.WorkflowID,
		CreatedAt: img.CreatedAt, UpdatedAt: img.UpdatedAt, ReadyAt: img.ReadyAt, Credential: img.Credential, Source: img.Source,
		Version: img.Version, Pinned: img.Pinned}
	if v.Source == "" {
		v.Source = store.SourceMirror
	}
	if img.Status == store.StatusReady {
		v.Format, v.Compression, v.FileChecksum = img.Format, img.Compression, img.FileChecksum
		v.SourceChecksum = img.SourceChecksum
		if v.SourceChecksum == "" {
			v.SourceChecksum = img.Checksum // READY before source_checksum was recorded: the same bytes
		}
		if img.VirtualSizeBytes > 0 {
			v.VirtualSizeBytes = &img.VirtualSizeBytes
		}
	}
	rate := img.BytesPerSecond
	if img.Terminal() {
		rate = 0 // nothing moves any more: no rate, no ETA
	}
	v.Progress = contract.NewProgress(img.BytesDone, img.BytesTotal, rate, img.Attempt, img.ProgressNodeID)
	if img.Status == store.StatusPending && img.WaitingUntil != nil {
		v.Progress.WaitingUntil, v.Progress.Message = img.WaitingUntil, img.WaitingMessage
	}
	if len(img.MirrorBytes) > 0 {
		v.Progress.Mirrors = img.MirrorBytes
	}
	if img.ErrorCode != "" {
		v.Error = &ErrorDetail{Code: img.ErrorCode, Message: img.ErrorMessage}
	}
	if len(img.Failovers) > 0 {
		v.Failovers = img.Failovers // kept once the download ended
	}
	return v
}

func viewImages(imgs []store.Image) []Image {
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, viewImage(img))
	}
	return out
}

// signatureOf is an image's signature status; one not recorded (yet) was
// not checked, and is never shown as anything better.
func signatureOf(img store.Image) string {
	if img.Signature == "" {
		return signature.NotChecked
	}
	return img.Signature
}
