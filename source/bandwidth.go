package source

import "github.com/quantix/cloudimages/fault"

// MinBandwidth is the smallest bandwidth cap, in bytes per second, for a
// node (--max-bandwidth) or one download (max_bytes_per_second): below it
// a cloud image would take days, and each wait of the rate limiter would
// approach the agent's stall timeout.
const MinBandwidth = 16_000

// CheckMaxBytesPerSecond checks a download's own bandwidth cap; 0 means none.
func CheckMaxBytesPerSecond(n int64) error {
	if n != 0 && n < MinBandwidth {
		return fault.New(fault.InvalidRequest, "max_bytes_per_second is %d: give at least %d (16 KB/s), or leave it out for no cap", n, MinBandwidth)
	}
	return nil
}
