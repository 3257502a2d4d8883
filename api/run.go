package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/store"
)

// DefaultShutdownTimeout bounds how long Run waits for requests in flight
// once ctx is done, when Config.ShutdownTimeout is not set.
const DefaultShutdownTimeout = 20 * time.Second

// Run opens the store, loads the catalog, and serves the API until ctx is
// done (SIGTERM); then it shuts down gracefully. The Temporal client is
// lazy: the API starts while Temporal is down, and the routes that need it
// answer 503 temporal_unavailable until it is back.
func Run(ctx context.Context, cfg Config) error {
	log := slog.Default().With("component", "api")
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	cat, err := catalog.Load(cfg.CatalogPath)
	if err != nil {
		return err
	}
	tc, err := client.NewLazyClient(client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		Logger: tlog.NewStructuredLogger(log.With("component", "temporal-client"))})
	if err != nil {
		return fmt.Errorf("temporal client for %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()
	srv, err := New(Deps{Store: st, Catalog: cat, Temporal: tc, Log: slog.Default(), Options: Options{
		APIToken: cfg.APIToken, TemporalAddress: cfg.TemporalAddress,
		TemporalNamespace: cfg.TemporalNamespace, TemporalWebURL: cfg.TemporalWebURL, Version: cfg.Version,
		NodeToken: cfg.NodeToken, AgentTLS: cfg.AgentTLS, UploadTTL: cfg.UploadTTL,
	}})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using it? pick another with --listen)", cfg.Listen, err)
	}
	if cfg.APIToken == "" && cfg.InsecureNoAuth {
		log.Warn("INSECURE: the API has no token (--insecure-no-auth): anyone who reaches "+ln.Addr().String()+" can register nodes, start downloads and delete images; give --api-token-file",
			"listen", ln.Addr().String())
	}
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	return serve(ctx, srv, ln, log, cfg.APIToken != "", timeout)
}

// serve serves the API on ln until ctx is done, then shuts down: it takes
// no new connection, and waits up to timeout for the requests in flight,
// uploads included, to be answered.
func serve(ctx context.Context, srv *Server, ln net.Listener, log *slog.Logger, auth bool, timeout time.Duration) error {
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: events streams last as long as a download.
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("API listening", "url", "http://"+ln.Addr().String(), "auth", auth)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("API shutting down", "shutdown_timeout", timeout)
	srv.Close() // ends the events streams, which would hold Shutdown up
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// A PATCH that reaches its handler from now on is streamed, which
	// Shutdown waits for, rather than relayed on a hijacked connection,
	// which it forgets; the relays already running are waited for (or cut
	// at the timeout) by drain.
	srv.relays.stopNew()
	var err error
	if serr := hs.Shutdown(sctx); serr != nil {
		err = fmt.Errorf("shutdown: %w (raise --shutdown-timeout to let long requests finish)", serr)
	}
	if cut := srv.relays.drain(sctx); cut > 0 {
		log.Warn("API shutdown cut uploads in flight: their clients resume from the offset the node kept", "uploads_cut", cut, "shutdown_timeout", timeout)
		err = errors.Join(err, fmt.Errorf("shutdown: cut %d upload PATCH bodies still being relayed after %s (their clients resume); raise --shutdown-timeout to let long uploads finish", cut, timeout))
	}
	if err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("API stopped")
	return nil
}
