package main

import (
	"github.com/quantix/cloudimages/store"
)

// controlPlane are the settings the API and the worker share.
type controlPlane struct {
	temporalAddress   string
	temporalNamespace string
	databaseURL       string
	nodeToken         string
	catalogPath       string
}

func (c *controlPlane) register(f *flags) {
	f.string(&c.temporalAddress, "temporal-address", "TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port")
	f.string(&c.temporalNamespace, "temporal-namespace", "TEMPORAL_NAMESPACE", "default", "Temporal namespace")
	f.stringShown(&c.databaseURL, "database-url", "DATABASE_URL", store.DefaultURL, "postgres://USER@HOST:PORT/DB, or sqlite:PATH (or a plain path)", store.Redact)
	f.secret(&c.nodeToken, "node-token", "CLOUDIMAGES_NODE_TOKEN", "bearer token for the node agents")
	f.string(&c.catalogPath, "catalog", "CLOUDIMAGES_CATALOG", "", "JSON file of catalog entries (default: the built-in catalog)")
}

func (c *controlPlane) validate() error {
	if c.temporalAddress == "" {
		return usagef("--temporal-address is empty: give the Temporal frontend as host:port, e.g. 127.0.0.1:7233")
	}
	if err := store.ValidateURL(c.databaseURL); err != nil {
		return usagef("--database-url: %v", err)
	}
	return nil
}
