package main

import (
	"context"
	"time"

	"github.com/quantix/cloudimages/api"
)

func runAPI(ctx context.Context, args []string) error {
	var cp controlPlane
	var cfg api.Config
	f := newFlags("api", "Runs the REST API and the web UI. It starts download workflows in Temporal and reads the store.")
	cp.register(f)
	f.string(&cfg.Listen, "listen", "CLOUDIMAGES_LISTEN", "127.0.0.1:8080", "host:port to serve the API and UI on")
	f.string(&cfg.APIToken, "api-token", "CLOUDIMAGES_API_TOKEN", "", "bearer token required on /v1/ routes (none: no auth)")
	f.duration(&cfg.NodeHealthInterval, "node-health-interval", "CLOUDIMAGES_NODE_HEALTH_INTERVAL", 5*time.Second, "how often the health of every node agent is checked (node status online/offline)")
	f.string(&cfg.TemporalWebURL, "temporal-web-url", "CLOUDIMAGES_TEMPORAL_WEB_URL", "http://127.0.0.1:8233", "Temporal Web, for links from the UI")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := cp.validate(); err != nil {
		return err
	}
	if cfg.NodeHealthInterval <= 0 {
		return usagef("--node-health-interval must be positive, e.g. 5s")
	}
	cfg.TemporalAddress, cfg.TemporalNamespace = cp.temporalAddress, cp.temporalNamespace
	cfg.DatabaseURL, cfg.NodeToken, cfg.CatalogPath = cp.databaseURL, cp.nodeToken, cp.catalogPath
	cfg.AgentTLS = cp.agentTLS
	cfg.Version = version
	return api.Run(ctx, cfg)
}
