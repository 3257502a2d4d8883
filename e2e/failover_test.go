package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// longGrace is a node grace no scenario below may wait: a download that
// is READY well within the test's timeouts proves the grace was skipped.
const longGrace = 5 * time.Minute

// TestDeadAgentsAreLeftAtOnce runs on a stack whose workers wait five
// minutes for an unreachable node (--node-grace 5m), so what finishes here
// took the fast path that tells a dead agent (its port refuses) from a
// slow network.
func TestDeadAgentsAreLeftAtOnce(t *testing.T) {
	s := testenv.StartStack(t, testenv.StackOptions{
		PersistTemporal: true,
		WorkerArgs: []string{"--node-grace", longGrace.String(), "--heartbeat-timeout", "6s",
			"--no-node-timeout", "90s", "--node-health-interval", "1s"},
	})
	up := testenv.NewUpstream(t)

	t.Run("kill -9 of the agent mid-download on the shared pool fails over without waiting the grace", func(t *testing.T) {
		f := addImage(up, "dead-agent.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		img := download(t, s, f, "shared")
		mid := waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
		victim := s.Agent(imageNode(mid))
		killed := time.Now()
		victim.Kill()
		t.Cleanup(func() { restartAgent(t, s, victim) })

		// Well inside the five-minute grace.
		done := waitStatus(t, s, img.ID, "READY", 90*time.Second)
		checkReadyFile(t, done, f)
		if imageNode(done) == victim.NodeID() {
			t.Fatalf("READY on %s, the node that was killed", victim.NodeID())
		}
		if len(done.Failovers) != 1 {
			t.Fatalf("failovers = %+v, want one away from %s", done.Failovers, victim.NodeID())
		}
		fo := done.Failovers[0]
		if fo.NodeID != victim.NodeID() || fo.Code != "node_unreachable" || !strings.Contains(fo.Reason, "is down") ||
			!strings.Contains(fo.Reason, "without waiting the node grace") {
			t.Errorf("failover %+v, want one from %s that says it is down", fo, victim.NodeID())
		}
		if fo.At.Sub(killed) >= longGrace {
			t.Errorf("failed over %s after the kill: the grace was waited", fo.At.Sub(killed))
		}
		// The next node resumed the shared pool's partial file: the mirror
		// sent at most what was past the dead node's last checkpoint again.
		if served := up.BytesServed(f.name); served >= int64(len(f.data))*3/2 {
			t.Errorf("the mirror served %d bytes for a %d-byte file: the partial data was not resumed", served, len(f.data))
		}
		checkNoData(t, s, "shared", "")
	})

	t.Run("the pool's only agent killed and restarted takes a download posted at once", func(t *testing.T) {
		a := s.Agent("node-1")
		a.Kill()
		t.Cleanup(func() { restartAgent(t, s, a) })
		eventually(t, 30*time.Second, "node-1 offline in the API", func() bool {
			var n struct{ Status string }
			status, err := s.API.Do(t.Context(), http.MethodGet, "/v1/nodes/node-1", nil, &n)
			return err == nil && status == http.StatusOK && n.Status == "offline"
		})

		// Posted while its only node is down: accepted, and the image
		// says it waits for a node of the pool, and why.
		early := addImage(up, "node-back-early.qcow2", smallSize)
		first := download(t, s, early, "local-1")
		waiting := waitImage(t, s, first.ID, 30*time.Second, "a wait for a node", func(i api.Image) bool {
			return i.Progress.WaitingUntil != nil
		})
		if waiting.Status != "PENDING" || !strings.HasPrefix(waiting.Progress.Message, `waiting for a node of pool "local-1" until `) ||
			!strings.Contains(waiting.Progress.Message, "node-1: ") {
			t.Errorf("image waiting for its pool's only node: %s %+v", waiting.Status, waiting.Progress)
		}

		// Started again; the API may still hold it offline: a POST now is
		// accepted all the same.
		a.Restart()
		late := addImage(up, "node-back-late.qcow2", smallSize)
		second := download(t, s, late, "local-1")
		for _, c := range []struct {
			id string
			f  mirrorFile
		}{{first.ID, early}, {second.ID, late}} {
			done := waitStatus(t, s, c.id, "READY", 90*time.Second)
			checkReadyFile(t, done, c.f)
			if done.Progress.WaitingUntil != nil || done.Progress.Message != "" {
				t.Errorf("READY image still says it waits: %+v", done.Progress)
			}
		}
	})

	t.Run("a pool with no nodes at all is still refused at once", func(t *testing.T) {
		s.API.MustDo(t, http.MethodPost, "/v1/pools", map[string]any{"id": "nobody", "type": "local"}, nil, http.StatusCreated)
		f := addImage(up, "nobody.qcow2", smallSize)
		var e struct {
			Error struct{ Code, Message string }
		}
		s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"url": f.url, "name": "nobody", "checksum": f.sum, "pool_id": "nobody"},
			&e, http.StatusUnprocessableEntity)
		if e.Error.Code != "no_node_available" || !strings.Contains(e.Error.Message, "has no nodes") {
			t.Errorf("POST into a pool without nodes: %+v", e)
		}
	})
}
