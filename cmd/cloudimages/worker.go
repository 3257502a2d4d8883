package main

import (
	"context"
	"time"

	"github.com/quantix/cloudimages/workers"
)

func runWorker(ctx context.Context, args []string) error {
	var cp controlPlane
	var cfg workers.Config
	f := newFlags("worker", "Runs the Temporal worker: DownloadImageWorkflow and its activities, on task queue image-downloads.")
	cp.register(f)
	f.duration(&cfg.NoNodeTimeout, "no-node-timeout", "CLOUDIMAGES_NO_NODE_TIMEOUT", 2*time.Minute, "how long a download waits for a usable node before it fails with no_node_available")
	f.duration(&cfg.NodeGrace, "node-grace", "CLOUDIMAGES_NODE_GRACE", 30*time.Second, "how long a node may stay unreachable mid-download before the download fails over")
	f.duration(&cfg.HeartbeatTimeout, "heartbeat-timeout", "CLOUDIMAGES_HEARTBEAT_TIMEOUT", 20*time.Second, "how soon a download notices its worker died and carries on on another worker")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := cp.validate(); err != nil {
		return err
	}
	if cfg.NoNodeTimeout <= 0 || cfg.NodeGrace <= 0 || cfg.HeartbeatTimeout <= 0 {
		return usagef("--no-node-timeout, --node-grace and --heartbeat-timeout must be positive")
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	cfg.TemporalAddress, cfg.TemporalNamespace = cp.temporalAddress, cp.temporalNamespace
	cfg.DatabaseURL, cfg.NodeToken, cfg.CatalogPath = cp.databaseURL, cp.nodeToken, cp.catalogPath
	return workers.Run(ctx, cfg)
}
