package main

import (
	"context"

	"github.com/quantix/cloudimages/api"
)

func runAPI(ctx context.Context, args []string) error {
	var cp controlPlane
	var cfg api.Config
	f := newFlags("api", "Runs the REST API and the web UI. It starts download workflows in Temporal and reads the store.")
	cp.register(f)
	f.string(&cfg.Listen, "listen", "CLOUDIMAGES_LISTEN", "127.0.0.1:8080", "host:port to serve the API and UI on")
	f.string(&cfg.APIToken, "api-token", "CLOUDIMAGES_API_TOKEN", "", "bearer token required on /v1/ routes (none: no auth)")
	f.string(&cfg.TemporalWebURL, "temporal-web-url", "CLOUDIMAGES_TEMPORAL_WEB_URL", "http://127.0.0.1:8233", "Temporal Web, for links from the UI")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := cp.validate(); err != nil {
		return err
	}
	cfg.TemporalAddress, cfg.TemporalNamespace = cp.temporalAddress, cp.temporalNamespace
	cfg.DatabaseURL, cfg.CatalogPath = cp.databaseURL, cp.catalogPath
	cfg.Version = version
	return api.Run(ctx, cfg)
}
