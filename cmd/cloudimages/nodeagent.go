package main

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantix/cloudimages/nodeagent"
)

func runNodeAgent(ctx context.Context, args []string) error {
	var cfg nodeagent.Config
	var pools []string
	f := newFlags("nodeagent", "Runs the agent of one hypervisor node: it downloads images into that node's storage pools.")
	f.string(&cfg.NodeID, "node-id", "CLOUDIMAGES_NODE_ID", "", "this node's id, as registered in the API (required)")
	f.list(&pools, "pool", "CLOUDIMAGES_POOLS", "a storage pool as ID=DIR; at least one")
	f.string(&cfg.Listen, "listen", "CLOUDIMAGES_LISTEN", "127.0.0.1:9090", "host:port to serve the agent API on")
	f.secret(&cfg.Token, "node-token", "CLOUDIMAGES_NODE_TOKEN", "this node's credential, printed by 'cloudimages node-token --node-id ID' (required)")
	f.string(&cfg.TLSCert, "tls-cert", "CLOUDIMAGES_TLS_CERT", "", "PEM certificate to serve HTTPS with (with --tls-key)")
	f.string(&cfg.TLSKey, "tls-key", "CLOUDIMAGES_TLS_KEY", "", "PEM private key of --tls-cert")
	f.int(&cfg.MaxConcurrent, "max-concurrent", "CLOUDIMAGES_MAX_CONCURRENT", 4, "downloads that run at once; the rest wait, queued")
	f.int(&cfg.MaxQueued, "max-queued", "CLOUDIMAGES_MAX_QUEUED", 64, "downloads that may wait for a slot; past it a request is refused with a retryable node_unreachable (503)")
	f.bool(&cfg.AllowPrivateNetworks, "allow-private-networks", "CLOUDIMAGES_ALLOW_PRIVATE_NETWORKS", false, "allow URLs on loopback and private addresses (mirrors on your LAN)")
	f.duration(&cfg.RetryBackoff, "retry-backoff", "CLOUDIMAGES_RETRY_BACKOFF", time.Second, "first wait before retrying a failed transfer; doubles up to 30s")
	f.int(&cfg.MaxAttempts, "max-attempts", "CLOUDIMAGES_MAX_ATTEMPTS", 5, "attempts in a row without progress before a download fails (retryable, so another node may try)")
	f.duration(&cfg.StallTimeout, "stall-timeout", "CLOUDIMAGES_STALL_TIMEOUT", time.Minute, "a mirror that sends nothing for this long is retried")
	var maxImageSize string
	f.string(&maxImageSize, "max-image-size", "CLOUDIMAGES_MAX_IMAGE_SIZE", "64GiB", "largest image a download may write (bytes, or with KiB/MiB/GiB/TiB); a larger one fails with too_large")
	f.string(&cfg.MinFree, "min-free", "CLOUDIMAGES_MIN_FREE", "5%", "free space every pool keeps for VMs: a percentage of the pool, or bytes (e.g. 20GiB); a download that would go below fails with disk_full")
	f.string(&cfg.QemuImg, "qemu-img", "CLOUDIMAGES_QEMU_IMG", "qemu-img", "the qemu-img that converts images for pools with an image_format (a path, or a name looked up on PATH); without one the agent still downloads, but converts nothing and says so at start and in /v1/health")
	var maxBandwidth string
	registerEgress(f, &cfg.Proxy, &cfg.CAFile)
	f.string(&maxBandwidth, "max-bandwidth", "CLOUDIMAGES_MAX_BANDWIDTH", "", "cap on the bytes per second of all this agent's downloads together, e.g. 50MB/s or 400Mbit (empty: none)")
	if err := f.parse(args); err != nil {
		return err
	}
	if cfg.NodeID == "" {
		return usagef("--node-id is required: the node's id as registered with POST /v1/nodes")
	}
	if cfg.Token == "" {
		return usagef("--node-token is required: this node's credential, printed by 'cloudimages node-token --node-id %s' from the cluster secret the worker and API hold as their --node-token", cfg.NodeID)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")
	}
	if cfg.MaxConcurrent < 1 {
		return usagef("--max-concurrent must be at least 1, got %d", cfg.MaxConcurrent)
	}
	if cfg.MaxQueued < 1 {
		return usagef("--max-queued must be at least 1, got %d", cfg.MaxQueued)
	}
	if cfg.RetryBackoff <= 0 || cfg.StallTimeout <= 0 || cfg.MaxAttempts < 1 {
		return usagef("--retry-backoff and --stall-timeout must be positive and --max-attempts at least 1")
	}
	size, err := nodeagent.ParseSize(maxImageSize)
	if err != nil || size == 0 {
		return usagef("--max-image-size %q: want a positive size such as 64GiB", maxImageSize)
	}
	cfg.MaxImageSize = size
	if err := nodeagent.CheckMinFree(cfg.MinFree); err != nil {
		return usagef("--min-free: %v", err)
	}
	if cfg.MaxBandwidth, err = nodeagent.ParseBandwidth(maxBandwidth); err != nil {
		return usagef("--max-bandwidth: %v", err)
	}
	if err := checkEgress(cfg.Proxy, cfg.CAFile); err != nil {
		return err
	}
	if cfg.Pools, err = parsePools(pools); err != nil {
		return err
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	cfg.Version = version
	return nodeagent.Run(ctx, cfg)
}

func parsePools(specs []string) ([]nodeagent.PoolDir, error) {
	if len(specs) == 0 {
		return nil, usagef("at least one --pool ID=DIR is required, e.g. --pool local-1=/var/lib/cloudimages/local-1")
	}
	seen := map[string]bool{}
	var out []nodeagent.PoolDir
	for _, s := range specs {
		id, dir, ok := strings.Cut(s, "=")
		id, dir = strings.TrimSpace(id), strings.TrimSpace(dir)
		if !ok || id == "" || dir == "" {
			return nil, usagef("--pool %q: want ID=DIR, e.g. nfs-01=/mnt/nfs-01", s)
		}
		if seen[id] {
			return nil, usagef("--pool %q: pool %q is given twice", s, id)
		}
		seen[id] = true
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, usagef("--pool %q: %v", s, err)
		}
		out = append(out, nodeagent.PoolDir{ID: id, Dir: abs})
	}
	return out, nil
}
