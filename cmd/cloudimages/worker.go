package main

import (
	"context"
	"time"

	"github.com/quantix/cloudimages/transferwindow"
	"github.com/quantix/cloudimages/workers"
	"github.com/quantix/cloudimages/workflows"
)

func runWorker(ctx context.Context, args []string) error {
	var cp controlPlane
	var cfg workers.Config
	f := newFlags("worker", "Runs the Temporal worker: "+workflows.WorkflowType+" and its activities, on task queue "+workflows.TaskQueue+".")
	cp.register(f)
	f.duration(&cfg.NoNodeTimeout, "no-node-timeout", "CLOUDIMAGES_NO_NODE_TIMEOUT", 2*time.Minute, "how long a download waits for a usable node before it fails with no_node_available")
	f.duration(&cfg.NodeGrace, "node-grace", "CLOUDIMAGES_NODE_GRACE", 30*time.Second, "how long a node may stay unreachable mid-download before the download fails over")
	f.duration(&cfg.HeartbeatTimeout, "heartbeat-timeout", "CLOUDIMAGES_HEARTBEAT_TIMEOUT", 20*time.Second, "how soon a download notices its worker died and carries on on another worker")
	f.string(&cfg.KeyringDir, "keyring", "CLOUDIMAGES_KEYRING", "", "directory of armored OpenPGP public keys of vendors whose keys are not built in (Ubuntu, Debian): checksum files signed by a key a catalog entry pins are then verified, not \"not_checked\"")
	f.duration(&cfg.NodeHealthInterval, "node-health-interval", "CLOUDIMAGES_NODE_HEALTH_INTERVAL", 5*time.Second, "how often the health of every node agent is checked (node status online/offline), once per cluster however many workers run")
	f.list(&cfg.TransferWindows, "transfer-windows", "CLOUDIMAGES_TRANSFER_WINDOWS", "cluster-wide transfer windows, HH:MM-HH:MM (e.g. 22:00-06:00), for the pools that set none: downloads wait outside them and pause at their end")
	f.string(&cfg.TransferTimeZone, "transfer-time-zone", "CLOUDIMAGES_TRANSFER_TIME_ZONE", "UTC", "IANA time zone of --transfer-windows, e.g. Europe/Berlin")
	f.string(&cfg.CredentialsPath, "credentials", "CLOUDIMAGES_CREDENTIALS", "", "source credentials downloads may name (\"credential\": NAME): a YAML or JSON file, mode 0600, mapping each name to a host and headers or username+password")
	f.string(&cfg.MetricsListen, "metrics-listen", "CLOUDIMAGES_METRICS_LISTEN", "", "host:port to serve Prometheus GET /metrics on (activities and workflows by type and outcome); empty serves none")
	registerEgress(f, &cfg.Proxy, &cfg.CAFile)
	if err := f.parse(args); err != nil {
		return err
	}
	if _, err := transferwindow.Parse(cfg.TransferWindows, cfg.TransferTimeZone); err != nil {
		return usagef("--transfer-windows / --transfer-time-zone: %v", err)
	}
	if err := cp.validate(); err != nil {
		return err
	}
	if cfg.NoNodeTimeout <= 0 || cfg.NodeGrace <= 0 || cfg.HeartbeatTimeout <= 0 || cfg.NodeHealthInterval <= 0 {
		return usagef("--no-node-timeout, --node-grace, --heartbeat-timeout and --node-health-interval must be positive")
	}
	if err := checkEgress(cfg.Proxy, cfg.CAFile); err != nil {
		return err
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	cfg.TemporalAddress, cfg.TemporalNamespace = cp.temporalAddress, cp.temporalNamespace
	cfg.DatabaseURL, cfg.NodeToken, cfg.CatalogPath = cp.databaseURL, cp.nodeToken, cp.catalogPath
	cfg.AgentTLS = cp.agentTLS
	return workers.Run(ctx, cfg)
}
