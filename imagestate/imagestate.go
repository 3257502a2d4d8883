// Package imagestate is the vocabulary of an image's life that the store,
// the workflows and the API share: its statuses and the failovers of its
// download. It imports nothing of ours, so the workflows can speak of an
// image without depending on the database.
package imagestate

import "time"

// Image statuses, as in the contract.
const (
	Pending     = "PENDING"
	Downloading = "DOWNLOADING"
	Verifying   = "VERIFYING"
	Converting  = "CONVERTING"
	Ready       = "READY"
	Failed      = "FAILED"
	Cancelled   = "CANCELLED"
)

// Statuses lists every status, in the order an image goes through them.
var Statuses = []string{Pending, Downloading, Verifying, Converting, Ready, Failed, Cancelled}

// IsTerminal reports whether status is READY, FAILED or CANCELLED: an
// image in one of them never changes status again.
func IsTerminal(status string) bool {
	return status == Ready || status == Failed || status == Cancelled
}

// Failover records one move of a download from a node to another.
type Failover struct {
	NodeID string    `json:"node_id"`
	Reason string    `json:"reason"`
	Code   string    `json:"code,omitempty"` // the node's error code
	At     time.Time `json:"at"`
}

// MirrorBytes is how many bytes of a download one mirror served, its URL
// with any password hidden.
type MirrorBytes struct {
	URL   string `json:"url"`
	Bytes int64  `json:"bytes"`
}
