package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"github.com/quantix/cloudimages/imagestate"
)

// Image statuses, as in the contract (package imagestate's, under the
// names the store's callers use).
const (
	StatusPending     = imagestate.Pending
	StatusDownloading = imagestate.Downloading
	StatusVerifying   = imagestate.Verifying
	StatusConverting  = imagestate.Converting
	StatusReady       = imagestate.Ready
	StatusFailed      = imagestate.Failed
	StatusCancelled   = imagestate.Cancelled
)

// Where an image's bytes come from (Image.Source), as in the contract.
const (
	SourceMirror = "mirror"
	SourcePeer   = "peer"
	SourceUpload = "upload"
)

// Node statuses, as in the contract.
const (
	NodeOnline  = "online"
	NodeOffline = "offline"
	NodeUnknown = "unknown"
)

// Node is a hypervisor node running a node agent.
type Node struct {
	ID              string `gorm:"primaryKey;size:64"`
	Name            string `gorm:"size:200"`
	Address         string `gorm:"size:300;not null"`
	Status          string `gorm:"size:16;not null;default:unknown"`
	LastSeenAt      *time.Time
	Pools           StringList `gorm:"type:text"` // pool ids the agent reports
	PoolSpace       PoolSpace  `gorm:"type:text"` // free and total bytes by pool id
	ActiveDownloads int
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Pool is a storage pool; PoolNodes lists the nodes assigned to it.
type Pool struct {
	ID     string `gorm:"primaryKey;size:64"`
	Name   string `gorm:"size:200"`
	Type   string `gorm:"size:16;not null"` // nfs | local
	Shared bool   `gorm:"not null;default:false"`
	// ImageFormat is the format the pool wants its images in ("raw" or
	// "qcow2"); "" keeps what the vendor ships.
	ImageFormat string `gorm:"size:16;not null;default:''"`
	// TransferWindows are the daily windows ("22:00-06:00") in TimeZone
	// (IANA; "" is UTC) when the pool's downloads may transfer; none means
	// the worker's cluster-wide default (--transfer-windows), if any.
	TransferWindows StringList `gorm:"type:text"`
	TimeZone        string     `gorm:"size:64;not null;default:''"`
	PoolNodes       []PoolNode `gorm:"foreignKey:PoolID;constraint:OnDelete:CASCADE"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// NodeIDs returns the ids of the nodes assigned to the pool, in order.
func (p Pool) NodeIDs() []string {
	ids := make([]string, 0, len(p.PoolNodes))
	for _, pn := range p.PoolNodes {
		ids = append(ids, pn.NodeID)
	}
	return ids
}

// PoolNode assigns a node to a pool.
type PoolNode struct {
	PoolID   string `gorm:"primaryKey;size:64"`
	NodeID   string `gorm:"primaryKey;size:64;index"`
	Position int
}

// Image is one download of an image into a pool, from PENDING to a
// terminal status. SourceKey identifies the source ("catalog:ID" or the
// URL) so that the schema can refuse a second live download of it.
type Image struct {
	ID        string `gorm:"primaryKey;size:64"`
	Name      string `gorm:"size:200"`
	CatalogID string `gorm:"size:100"`
	SourceURL string `gorm:"size:2048"`
	SourceKey string `gorm:"size:2048;not null"`
	// Source is where the bytes come from: SourceMirror (a URL or catalog
	// entry), SourcePeer (another node) or SourceUpload (a user's upload).
	Source     string `gorm:"size:16;not null;default:mirror"`
	PoolID     string `gorm:"size:64;not null;index"`
	NodeID     string `gorm:"size:64"`
	FileName   string `gorm:"size:255"`
	Path       string `gorm:"size:4096"`
	Status     string `gorm:"size:16;not null;index"`
	SizeBytes  int64
	Checksum   string `gorm:"size:200"`
	Unverified bool   // the image was accepted without a checksum
	// Signature is what the signature of the vendor's checksum file said:
	// "verified", "unsigned" or "not_checked"; "" until the checksum is
	// resolved (and for images from before signatures were checked).
	Signature string `gorm:"size:16"`
	// DeclaredFormat is the disk format the request declared, "" for none
	// (a catalog entry declares its own).
	DeclaredFormat string `gorm:"size:16"`

	// What the node found once it published the file, set when READY:
	// Format and VirtualSizeBytes by inspecting it, Compression of the
	// downloaded bytes ("none", "xz", ...), SourceChecksum of those bytes
	// (the same as Checksum) and FileChecksum ("sha256:HEX") of the file.
	Format           string `gorm:"size:16"`
	VirtualSizeBytes int64
	Compression      string `gorm:"size:16"`
	SourceChecksum   string `gorm:"size:200"`
	FileChecksum     string `gorm:"size:200"`

	// Live progress, written at most every few seconds by the activity
	// that watches the node (never once per chunk).
	BytesDone      int64
	BytesTotal     int64
	BytesPerSecond float64
	Attempt        int
	ProgressNodeID string      `gorm:"size:64"`
	MirrorBytes    MirrorBytes `gorm:"type:text"` // bytes each mirror served, in the order tried

	// Credential names the worker's source credential the download sends
	// to its mirror's host; the secret is never stored.
	Credential string `gorm:"size:64"`

	// WaitingUntil is when a PENDING download waiting for its pool's next
	// transfer window may start (or resume), and WaitingMessage says so;
	// cleared when it transfers again or ends.
	WaitingUntil   *time.Time
	WaitingMessage string `gorm:"size:1000"`

	ErrorCode    string    `gorm:"size:64"`
	ErrorMessage string    `gorm:"size:4096"`
	Failovers    Failovers `gorm:"type:text"` // recorded when the download ends

	WorkflowID string `gorm:"size:200"`
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ReadyAt    *time.Time

	// Version is the vendor build the image is (see catalog.Version); ""
	// until the checksum is known. Pinned images are never removed by a
	// subscription's retention.
	Version string `gorm:"size:100"`
	Pinned  bool
}

// Terminal reports whether the image's status can no longer change.
func (i Image) Terminal() bool { return IsTerminal(i.Status) }

// IsTerminal reports whether status is READY, FAILED or CANCELLED.
func IsTerminal(status string) bool { return imagestate.IsTerminal(status) }

// StringList is a []string kept as a JSON array in one text column.
type StringList []string

// Value implements driver.Valuer.
func (s StringList) Value() (driver.Value, error) {
	if s == nil {
		s = StringList{}
	}
	b, err := json.Marshal([]string(s))
	return string(b), err
}

// Scan implements sql.Scanner.
func (s *StringList) Scan(v any) error { return scanJSON(v, s) }

// scanJSON reads a JSON text column into dst; NULL and empty leave it zero.
func scanJSON[T any](v any, dst *T) error {
	var b []byte
	switch x := v.(type) {
	case nil:
		var zero T
		*dst = zero
		return nil
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return fmt.Errorf("%T: cannot scan %T", *dst, v)
	}
	if len(b) == 0 {
		var zero T
		*dst = zero
		return nil
	}
	return json.Unmarshal(b, dst)
}

// Space is the free and total bytes of a pool directory on a node.
type Space struct {
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// PoolSpace is the space of each pool a node serves, by pool id, kept as a
// JSON object in one text column.
type PoolSpace map[string]Space

// Value implements driver.Valuer.
func (p PoolSpace) Value() (driver.Value, error) {
	if p == nil {
		p = PoolSpace{}
	}
	b, err := json.Marshal(map[string]Space(p))
	return string(b), err
}

// Scan implements sql.Scanner.
func (p *PoolSpace) Scan(v any) error { return scanJSON(v, p) }

// Failover records one move of a download from a node to another.
type Failover = imagestate.Failover

// Failovers is a download's failovers, kept as a JSON array in one text column.
type Failovers []Failover

// Value implements driver.Valuer.
func (f Failovers) Value() (driver.Value, error) {
	if f == nil {
		f = Failovers{}
	}
	b, err := json.Marshal([]Failover(f))
	return string(b), err
}

// Scan implements sql.Scanner.
func (f *Failovers) Scan(v any) error { return scanJSON(v, f) }

// MirrorBytes are the bytes each mirror of a download served, kept as a
// JSON array in one text column.
type MirrorBytes []imagestate.MirrorBytes

// Value implements driver.Valuer.
func (m MirrorBytes) Value() (driver.Value, error) {
	if m == nil {
		m = MirrorBytes{}
	}
	b, err := json.Marshal([]imagestate.MirrorBytes(m))
	return string(b), err
}

// Scan implements sql.Scanner.
func (m *MirrorBytes) Scan(v any) error { return scanJSON(v, m) }
