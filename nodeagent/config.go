package nodeagent

import (
	"log/slog"
	"time"
)

// PoolDir is one storage pool the agent serves: its id and its directory.
type PoolDir struct {
	ID  string
	Dir string
}

// Config is the agent's configuration, filled from flags and environment
// by cmd/cloudimages.
type Config struct {
	NodeID               string
	Listen               string
	Token                string
	Pools                []PoolDir
	MaxConcurrent        int
	AllowPrivateNetworks bool
	Version              string
	// TLSCert and TLSKey are PEM files: with both, the agent serves HTTPS.
	TLSCert string
	TLSKey  string

	// RetryBackoff is the first wait between attempts at a mirror, doubled
	// after each attempt up to 30s (default 1s).
	RetryBackoff time.Duration
	// MaxAttempts is how many attempts in a row may fail without a byte of
	// progress before the download fails with a retryable upstream_error,
	// so the workflow can try another node (default 5).
	MaxAttempts int
	// StallTimeout ends an attempt whose mirror sends nothing for this
	// long: no response headers, or no body bytes (default 60s).
	StallTimeout time.Duration
	// Logger receives the agent's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxConcurrent < 1 {
		c.MaxConcurrent = 4
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.MaxAttempts < 1 {
		c.MaxAttempts = 5
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}
