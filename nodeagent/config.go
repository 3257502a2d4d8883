package nodeagent

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
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
	// MaxQueued bounds the downloads waiting for a slot (default 64): past
	// it a request is refused with a retryable node_unreachable (503), so
	// the caller tries later or another node instead of piling up jobs.
	MaxQueued int
	// MaxImageSize caps the bytes of one download, downloaded and written
	// alike (default DefaultMaxImageSize): a body that goes past it, or a
	// file announced larger, fails with too_large.
	MaxImageSize int64
	// MinFree is the free space every pool keeps for what else lives on
	// it (VMs): a share of the pool's size such as "5%", or a byte count
	// with an optional unit ("20GiB"); "0" keeps none (default "5%"). A
	// download that would go below it fails with disk_full.
	MinFree string
	// QemuImg is the qemu-img the agent converts images with (a name on
	// PATH or a path; default "qemu-img"). Without one the agent still
	// downloads, but does not offer conversion (no "convert" in health).
	QemuImg string
	// Proxy is the HTTP proxy for mirrors (--proxy, a URL that may carry
	// USER:PASSWORD@); empty: the standard HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY variables, if set. See package egress.
	Proxy string
	// CAFile is a PEM bundle trusted for mirrors besides the system's
	// roots (--ca-file).
	CAFile string
	// MaxBandwidth caps the bytes per second of all the agent's downloads
	// together (--max-bandwidth); 0: no cap.
	MaxBandwidth int64
	// Logger receives the agent's logs (default slog.Default()).
	Logger *slog.Logger
}

// DefaultMaxImageSize is MaxImageSize when none is given: larger than any
// vendor's cloud image, small enough that a runaway body is stopped.
const DefaultMaxImageSize = 64 << 30

// reserve is the free space a pool keeps: a share of its size, or bytes.
type reserve struct {
	percent float64
	bytes   uint64
}

// of returns the reserve in bytes for a pool of total bytes.
func (r reserve) of(total uint64) uint64 {
	if r.percent > 0 {
		return uint64(float64(total) * r.percent / 100)
	}
	return r.bytes
}

// CheckMinFree says what is wrong with a MinFree value, if anything.
func CheckMinFree(s string) error {
	_, err := parseMinFree(s)
	return err
}

// parseMinFree reads a MinFree value: "5%" (0 to 100) or a size.
func parseMinFree(s string) (reserve, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || p < 0 || p > 100 {
			return reserve{}, fmt.Errorf("min free %q: want a percentage from 0%% to 100%%, such as 5%%", s)
		}
		return reserve{percent: p}, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return reserve{}, fmt.Errorf("min free: %w (or a percentage such as 5%%)", err)
	}
	return reserve{bytes: uint64(n)}, nil
}

// ParseSize reads a byte count: a whole number with an optional unit,
// KiB, MiB, GiB or TiB (powers of 1024), KB, MB, GB or TB (of 1000).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want bytes, such as 68719476736 or 64GiB", s)
	}
	return n * mult, nil
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
	if c.MaxQueued < 1 {
		c.MaxQueued = 64
	}
	if c.MaxImageSize <= 0 {
		c.MaxImageSize = DefaultMaxImageSize
	}
	if c.MinFree == "" {
		c.MinFree = "5%"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}
