package workers

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/internal/egress"
	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// Run opens the database, loads the catalog, connects to Temporal,
// registers the search attributes and runs the worker until ctx is done;
// then it stops gracefully.
func Run(ctx context.Context, cfg Config) error {
	log := slog.Default().With("component", "worker")
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	cat, err := catalog.Load(cfg.CatalogPath)
	if err != nil {
		return err
	}
	creds, err := credentials.Load(cfg.CredentialsPath)
	if err != nil {
		return err
	}
	if names := creds.Names(); len(names) > 0 {
		log.Info("source credentials loaded", "names", names)
	}
	proxy, err := egress.NewProxy(cfg.Proxy)
	if err != nil {
		return err
	}
	roots, err := egress.RootCAs(cfg.CAFile)
	if err != nil {
		return err
	}
	if proxy != nil {
		log.Info("checksum files are fetched through a proxy", "proxy", proxy.String())
	}
	keys, err := signature.Load(cfg.KeyringDir)
	if err != nil {
		return err
	}
	logSigningKeys(log, cat, keys)
	var metrics *Metrics
	if cfg.MetricsListen != "" {
		metrics = NewMetrics()
		served, stopServing := context.WithCancel(ctx) // until Run returns, whyever it does
		defer stopServing()
		if err := ServeMetrics(served, cfg.MetricsListen, metrics, log); err != nil {
			return err
		}
	}
	c, err := Dial(ctx, cfg, log)
	if ctx.Err() != nil {
		return nil // stopped before Temporal answered
	} else if err != nil {
		return err
	}
	defer c.Close()
	added, err := EnsureSearchAttributes(ctx, c, cfg.TemporalNamespace)
	if err != nil {
		return err
	}
	if len(added) > 0 {
		log.Info("registered search attributes", "names", added)
	}
	w := New(c, Deps{Store: st, Catalog: cat, NodeToken: cfg.NodeToken, AgentTLS: cfg.AgentTLS, Credentials: creds, Keyring: keys, Metrics: metrics,
		HTTP: egress.Client(proxy, roots, 30*time.Second), Settings: activities.Settings{
			NoNodeTimeout: cfg.NoNodeTimeout, NodeGrace: cfg.NodeGrace, HeartbeatTimeout: cfg.HeartbeatTimeout,
			TransferWindows: cfg.TransferWindows, TransferTimeZone: cfg.TransferTimeZone}})
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	if err := StartNodeHealth(ctx, c, cfg.NodeHealthInterval); err != nil {
		w.Stop()
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	keep := cfg.NodeHealthKeepInterval
	if keep <= 0 {
		keep = 30 * time.Second
	}
	log.Info("worker running", "task_queue", workflows.TaskQueue, "temporal", cfg.TemporalAddress, "namespace", cfg.TemporalNamespace)
	keepNodeHealth(ctx, c, cfg.NodeHealthInterval, keep, log) // until ctx is done
	log.Info("worker stopping")
	w.Stop()
	return nil
}

// Dial connects to Temporal, trying again for up to cfg.DialTimeout (a
// worker often starts alongside its server), and says what to do when it
// cannot.
func Dial(ctx context.Context, cfg Config, log *slog.Logger) (client.Client, error) {
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	for {
		c, err := client.DialContext(ctx, client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
			Logger: tlog.NewStructuredLogger(log)})
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // stopped while waiting: not Temporal's fault
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("temporal at %s (namespace %q) does not answer after %s: %w; start it (`make run` starts a dev server, or `temporal server start-dev`) or point --temporal-address (TEMPORAL_ADDRESS) at it",
				cfg.TemporalAddress, cfg.TemporalNamespace, timeout, err)
		}
		log.Warn("temporal does not answer yet; trying again", "address", cfg.TemporalAddress, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// logSigningKeys says, once at startup, which catalog entries' signed
// checksum files this worker can verify, and which it cannot for want of
// a key (their images will say signature "not_checked").
func logSigningKeys(log *slog.Logger, cat *catalog.Catalog, keys *signature.Keyring) {
	var unchecked []string
	for _, e := range cat.Entries() {
		if e.Signed() && !keys.HoldsAny(e.SigningKeys) {
			unchecked = append(unchecked, e.ID+" ("+strings.Join(e.SigningKeys, ", ")+")")
		}
	}
	log.Info("signing keys loaded", "keys", len(keys.Fingerprints()))
	if len(unchecked) > 0 {
		log.Warn("no key for some catalog entries' signed checksum files: their images will say signature not_checked; put the vendors' public keys in --keyring (CLOUDIMAGES_KEYRING)",
			"entries", unchecked)
	}
}
