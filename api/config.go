// Package api is the Echo REST API and the web UI of cloudimages: nodes,
// pools, the catalog, images and their live progress.
package api

import (
	"crypto/tls"
	"time"
)

// Config is the API's configuration, filled from flags and environment by
// cmd/cloudimages.
type Config struct {
	Listen            string
	TemporalAddress   string
	TemporalNamespace string
	TemporalWebURL    string
	DatabaseURL       string
	APIToken          string
	// InsecureNoAuth says the API serves beyond loopback without a token
	// on purpose (--insecure-no-auth): Run warns about it.
	InsecureNoAuth bool
	CatalogPath    string
	Version        string
	// NodeToken is the cluster secret, AgentTLS the agents' CA: the API
	// streams uploads to the agents with them.
	NodeToken string
	AgentTLS  *tls.Config
	// UploadTTL is how long an upload may receive nothing before it expires.
	UploadTTL time.Duration
	// ShutdownTimeout is how long a shutdown waits for the requests in
	// flight, uploads included (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}
