package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/quantix/cloudimages/store"
)

// controlPlane are the settings the API and the worker share.
type controlPlane struct {
	temporalAddress   string
	temporalNamespace string
	databaseURL       string
	nodeToken         string
	catalogPath       string
	agentCAFile       string
	agentTLS          *tls.Config // loaded from agentCAFile by validate
}

func (c *controlPlane) register(f *flags) {
	f.string(&c.temporalAddress, "temporal-address", "TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port")
	f.string(&c.temporalNamespace, "temporal-namespace", "TEMPORAL_NAMESPACE", "default", "Temporal namespace")
	f.stringShown(&c.databaseURL, "database-url", "DATABASE_URL", store.DefaultURL, "postgres://USER@HOST:PORT/DB, or sqlite:PATH (or a plain path)", store.Redact)
	f.secret(&c.nodeToken, "node-token", "CLOUDIMAGES_NODE_TOKEN", "the cluster secret: each node's credential is derived from it ('cloudimages node-token')")
	f.string(&c.agentCAFile, "agent-ca-file", "CLOUDIMAGES_AGENT_CA_FILE", "", "PEM CA that signed the agents' --tls-cert; agents are then reached over https")
	f.string(&c.catalogPath, "catalog", "CLOUDIMAGES_CATALOG", "", "JSON file of catalog entries (default: the built-in catalog)")
}

func (c *controlPlane) validate() error {
	if c.temporalAddress == "" {
		return usagef("--temporal-address is empty: give the Temporal frontend as host:port, e.g. 127.0.0.1:7233")
	}
	if err := store.ValidateURL(c.databaseURL); err != nil {
		return usagef("--database-url: %v", err)
	}
	if c.agentCAFile != "" {
		pem, err := os.ReadFile(c.agentCAFile)
		if err != nil {
			return usagef("--agent-ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usagef("--agent-ca-file %s holds no PEM certificate: give the CA certificate that signed the agents' --tls-cert", c.agentCAFile)
		}
		c.agentTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return nil
}
