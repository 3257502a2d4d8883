package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/workflows/contract"
)

func copyAt(pool, status, source string, done, total int64) api.DistributionCopy {
	return api.DistributionCopy{PoolID: pool, Status: status, Source: source, NodeID: "node-2",
		Progress: &contract.Progress{BytesDone: done, BytesTotal: total, Percent: pct(done, total)}}
}

// TestDistViewOffATerminalPrintsChangesNotWaits: a line a pool when its
// copy's status or source changes or its bytes move; a copy that waits
// (PENDING, nothing done) is not printed again at every poll.
func TestDistViewOffATerminalPrintsChangesNotWaits(t *testing.T) {
	var out bytes.Buffer
	v := newDistView(&out)
	v.every = 0 // every poll may print a moving copy
	pending := copyAt("p2", "PENDING", "", 0, 0)
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 1<<20, 4<<20), pending}})
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 2<<20, 4<<20), pending}})
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 2<<20, 4<<20), pending}})
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "READY", "mirror", 4<<20, 4<<20),
		copyAt("p2", "PENDING", "node:node-1", 0, 0)}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"p1  DOWNLOADING  25.0%  1.0 MiB of 4.0 MiB  on node-2  from mirror",
		"p2  PENDING  on node-2",
		"p1  DOWNLOADING  50.0%  2.0 MiB of 4.0 MiB  on node-2  from mirror",
		"p1  READY  100.0%  4.0 MiB of 4.0 MiB  on node-2  from mirror",
		"p2  PENDING  on node-2  from node:node-1",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

// TestCopyTextSaysNothingDoneAsZero: a copy that has its size but no bytes
// yet reads "0 B of 300 MiB", not "- of 300 MiB".
func TestCopyTextSaysNothingDoneAsZero(t *testing.T) {
	got := copyText(copyAt("p3", "DOWNLOADING", "node:node-1", 0, 300<<20), false)
	if !strings.Contains(got, "0.0%  0 B of 300 MiB") {
		t.Errorf("copyText = %q, want 0 B of 300 MiB", got)
	}
}

func pct(done, total int64) float64 {
	if total == 0 {
		return 0
	}
	return float64(done) * 100 / float64(total)
}
