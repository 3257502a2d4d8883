// Package api is the Echo REST API and the web UI of cloudimages: nodes,
// pools, the catalog, images and their live progress.
package api

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
}
