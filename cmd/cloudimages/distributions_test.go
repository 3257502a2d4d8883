package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

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
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 1<<20, 4<<20), pending}}, nil)
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 2<<20, 4<<20), pending}}, nil)
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "DOWNLOADING", "mirror", 2<<20, 4<<20), pending}}, nil)
	v.show(api.Distribution{Copies: []api.DistributionCopy{copyAt("p1", "READY", "mirror", 4<<20, 4<<20),
		copyAt("p2", "PENDING", "node:node-1", 0, 0)}}, nil)
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
	got := copyText(copyAt("p3", "DOWNLOADING", "node:node-1", 0, 300<<20), false, nil)
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

// TestDistViewSaysACopysNodeIsOffline: a copy whose node went offline
// shows no bytes moving; its line says the node is offline at once, and
// a copy that ended says nothing of it.
func TestDistViewSaysACopysNodeIsOffline(t *testing.T) {
	var out bytes.Buffer
	v := newDistView(&out)
	stuck := copyAt("p3", "DOWNLOADING", "node:node-1", 0, 4<<20)
	ready := copyAt("p4", "READY", "node:node-1", 4<<20, 4<<20)
	v.show(api.Distribution{Copies: []api.DistributionCopy{stuck, ready}}, nil)
	seen := time.Now().Add(-2 * time.Minute)
	v.show(api.Distribution{Copies: []api.DistributionCopy{stuck, ready}}, map[string]*time.Time{"node-2": &seen})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[2], "on node-2  node node-2 OFFLINE (last seen 2m ago: see 'cloudimages nodes ls')  from node:node-1") {
		t.Errorf("want the stuck copy printed again saying node-2 is offline:\n%s", out.String())
	}
	if strings.Contains(lines[1], "OFFLINE") {
		t.Errorf("a READY copy says its node is offline: %s", lines[1])
	}
}

// TestProgressTextSaysWhyADownloadWaits: the API's message of a waiting
// download (a transfer window, no node) is shown, not PENDING alone.
func TestProgressTextSaysWhyADownloadWaits(t *testing.T) {
	msg := "waiting for a node of pool p3 until 20:00: node-3 is offline"
	got := progressText(api.Image{Status: "PENDING", Progress: contract.Progress{Message: msg}}, true)
	if got != "PENDING  "+msg {
		t.Errorf("progressText = %q, want PENDING and the message", got)
	}
}

// TestFailedGroupsPrintsACommonCauseOnce: five pools that failed for the
// same reason are one line; another reason is its own.
func TestFailedGroupsPrintsACommonCauseOnce(t *testing.T) {
	fail := func(pool, code, msg string) api.DistributionCopy {
		return api.DistributionCopy{PoolID: pool, Status: "FAILED", Error: &api.ErrorDetail{Code: code, Message: msg}}
	}
	d := api.Distribution{Copies: []api.DistributionCopy{
		fail("p1", "checksum_unavailable", "no internet"), {PoolID: "p2", Status: "READY"},
		fail("p3", "disk_full", "p3 is full"), fail("p4", "checksum_unavailable", "no internet"),
		{PoolID: "p5", Status: "CANCELLED"},
	}}
	got := failedGroups(d)
	want := []failedGroup{
		{pools: []string{"p1", "p4"}, why: "FAILED: checksum_unavailable: no internet"},
		{pools: []string{"p3"}, why: "FAILED: disk_full: p3 is full"},
		{pools: []string{"p5"}, why: "CANCELLED"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("failedGroups = %v, want %v", got, want)
	}
}
