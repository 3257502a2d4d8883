package nodeagent

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/time/rate"

	"github.com/quantix/cloudimages/source"
)

// bandwidthUnits are the units ParseBandwidth reads, longest first: bytes
// (B, KB, MB, GB of 1000; KiB, MiB, GiB of 1024) and bits (bit, Kbit,
// Mbit, Gbit of 1000, also as Kbps, Mbps, Gbps).
var bandwidthUnits = []struct {
	suffix string
	bytes  float64
}{
	{"Gbps", 1e9 / 8}, {"Mbps", 1e6 / 8}, {"Kbps", 1e3 / 8}, {"kbps", 1e3 / 8},
	{"Gbit", 1e9 / 8}, {"Mbit", 1e6 / 8}, {"Kbit", 1e3 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1},
}

// ParseBandwidth reads a rate such as "50MB/s", "400Mbit", "10MiB/s" or a
// plain number of bytes per second; "" and "0" are no limit (0).
func ParseBandwidth(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	num := strings.TrimSuffix(s, "/s")
	mult := 1.0
	for _, u := range bandwidthUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.bytes
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	bps := f * mult
	if err != nil || math.IsNaN(bps) || bps < 0 || bps > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: want a rate such as 50MB/s, 10MiB/s or 400Mbit (bytes per second without a unit)", s)
	}
	if bps < source.MinBandwidth {
		return 0, fmt.Errorf("%q is below the smallest cap, %d bytes per second (16KB/s)", s, source.MinBandwidth)
	}
	return int64(bps), nil
}

// newLimiter is a token bucket of bps bytes a second, or nil for none.
// Its burst, a tenth of a second's worth (16 KiB to 1 MiB), is the most a
// download may read ahead of the rate: over 10 s that is 1 % at most.
func newLimiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	burst := min(max(bps/10, 16<<10), 1<<20)
	return rate.NewLimiter(rate.Limit(bps), int(burst))
}
