package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Run serves the agent on cfg.Listen until ctx is done, then stops taking
// requests and stops the downloads at a checkpoint: the next start resumes
// them.
func Run(ctx context.Context, cfg Config) error {
	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.Close()
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         tlsCfg,
	}
	srv.RegisterOnShutdown(s.drain)
	pools := make([]string, 0, len(cfg.Pools))
	for _, p := range cfg.Pools {
		pools = append(pools, p.ID+"="+p.Dir)
	}
	s.log.Info("node agent listening", "addr", ln.Addr().String(), "pools", pools, "max_concurrent", s.cfg.MaxConcurrent, "allow_private_networks", cfg.AllowPrivateNetworks, "tls", tlsCfg != nil, "max_bandwidth_bytes_per_second", cfg.MaxBandwidth)
	errc := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.log.Info("node agent stopping")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(shutdownCtx)
		cancel()
	}
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info("node agent stopped")
	return err
}

// serverTLS loads the agent's certificate when it is to serve HTTPS; nil
// means plain HTTP. One of the two files without the other is a mistake,
// not a reason to fall back to plain HTTP.
func serverTLS(cfg Config) (*tls.Config, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("nodeagent: give both a TLS certificate and its key, or neither")
	}
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate %s and key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
