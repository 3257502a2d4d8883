package main

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/quantix/cloudimages/api"
)

func runAPI(ctx context.Context, args []string) error {
	var cp controlPlane
	var cfg api.Config
	f := newFlags("api", "Runs the REST API and the web UI. It starts download workflows in Temporal and reads the store.")
	cp.register(f)
	f.string(&cfg.Listen, "listen", "CLOUDIMAGES_LISTEN", "127.0.0.1:8080", "host:port to serve the API and UI on")
	f.secret(&cfg.APIToken, "api-token", "CLOUDIMAGES_API_TOKEN", "bearer token required on /v1/ routes (none: no auth, allowed on loopback only)")
	f.bool(&cfg.InsecureNoAuth, "insecure-no-auth", "CLOUDIMAGES_INSECURE_NO_AUTH", false, "serve beyond loopback without --api-token: anyone who reaches the API can drive it")
	f.string(&cfg.TemporalWebURL, "temporal-web-url", "CLOUDIMAGES_TEMPORAL_WEB_URL", "http://127.0.0.1:8233", "Temporal Web, for links from the UI")
	f.duration(&cfg.UploadTTL, "upload-ttl", "CLOUDIMAGES_UPLOAD_TTL", 24*time.Hour, "how long an upload may receive no bytes before it expires and its partial data is removed")
	f.duration(&cfg.ShutdownTimeout, "shutdown-timeout", "CLOUDIMAGES_SHUTDOWN_TIMEOUT", api.DefaultShutdownTimeout, "on SIGTERM, how long requests in flight (uploads included) may take to finish before they are cut; keep it below the orchestrator's grace period")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := cp.validate(); err != nil {
		return err
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	if err := checkListenAuth(cfg.Listen, cfg.APIToken != "", cfg.InsecureNoAuth); err != nil {
		return err
	}
	cfg.TemporalAddress, cfg.TemporalNamespace = cp.temporalAddress, cp.temporalNamespace
	cfg.DatabaseURL, cfg.CatalogPath = cp.databaseURL, cp.catalogPath
	cfg.NodeToken, cfg.AgentTLS = cp.nodeToken, cp.agentTLS
	if cfg.UploadTTL <= 0 {
		return usagef("--upload-ttl must be positive, e.g. 24h")
	}
	if cfg.ShutdownTimeout <= 0 {
		return usagef("--shutdown-timeout must be positive, e.g. 20s")
	}
	cfg.Version = version
	return api.Run(ctx, cfg)
}

// checkListenAuth refuses to serve the API beyond loopback without a token:
// whoever reaches it could register a node and start downloads. A host
// name other than localhost counts as beyond loopback, as does an empty
// host (":8080" listens on every address).
func checkListenAuth(listen string, token, insecure bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return usagef("--listen %q: want host:port, e.g. 127.0.0.1:8080", listen)
	}
	if token || insecure || host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return usagef("--listen %s serves beyond loopback, so the API needs a token: give --api-token-file FILE (or --api-token, env CLOUDIMAGES_API_TOKEN), e.g. made with openssl rand -hex 24; "+
		"or listen on 127.0.0.1; or, only on a network you trust, --insecure-no-auth", listen)
}
