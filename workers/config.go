// Package workers builds and runs the Temporal worker: it registers
// DownloadImageWorkflow and its activities on the image-downloads task
// queue, and the search attributes they use.
package workers

import (
	"crypto/tls"
	"time"
)

// Config is the worker's configuration, filled from flags and environment
// by cmd/cloudimages.
type Config struct {
	TemporalAddress   string
	TemporalNamespace string
	DatabaseURL       string
	NodeToken         string      // the cluster secret; see package nodeauth
	AgentTLS          *tls.Config // the agents' CA, when they serve HTTPS
	CatalogPath       string
	// CredentialsPath is the source credentials file (--credentials): YAML
	// or JSON, mode 0600; "" holds none.
	CredentialsPath string
	// Proxy and CAFile are how checksum files are fetched: see package
	// egress (--proxy, --ca-file).
	Proxy  string
	CAFile string
	// KeyringDir is a directory of vendors' armored public keys, added to
	// those built in, that checksum files' signatures are checked with
	// (--keyring); "" uses the built-in keys only.
	KeyringDir    string
	NoNodeTimeout time.Duration // how long to wait for a usable node
	NodeGrace     time.Duration // how long a node may be unreachable mid-download
	// HeartbeatTimeout is how soon a dead worker is noticed (default 20s).
	HeartbeatTimeout time.Duration
	// NodeHealthInterval is how often every node's agent is checked, once
	// per cluster (default 5s).
	NodeHealthInterval time.Duration
	// NodeHealthKeepInterval is how often the worker makes sure the node
	// health workflow still runs, and starts it again if not (default 30s).
	NodeHealthKeepInterval time.Duration
	// TransferWindows ("22:00-06:00", …) in TransferTimeZone (IANA, ""
	// is UTC) are the cluster-wide transfer windows: those of every pool
	// that sets none. None: downloads transfer at any time.
	TransferWindows  []string
	TransferTimeZone string
	// MetricsListen, when set, is the host:port the worker serves its
	// Prometheus GET /metrics on (--metrics-listen); "" serves none.
	MetricsListen string
	// DialTimeout bounds how long Run keeps trying to reach Temporal
	// (default 1 minute).
	DialTimeout time.Duration
}
