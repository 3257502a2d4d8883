package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// watchUntilCrash runs the watch of node-1's job while node-1 crashes
// once the watch has seen it running.
func watchUntilCrash(t *testing.T, b *bench, victim *fakeAgent, j activities.Job) error {
	t.Helper()
	go func() {
		<-victim.polled
		victim.crash()
	}()
	_, err := b.watch(j)
	return err
}

// A dead agent (its port refuses connections, health checks too) on a
// shared pool that another node serves is left at once: the node grace,
// five minutes here, is not waited, and the reason says the node is down.
func TestWatchFailsOverAtOnceFromADeadAgentOnASharedPool(t *testing.T) {
	victim, standby := newFakeAgent(t, "node-1", "pool-1"), newFakeAgent(t, "node-2", "pool-1")
	victim.script = []agentclient.Download{running(100, 1000)}
	b := newBench(t, true, victim, standby)
	b.acts.Settings.NodeGrace = 5 * time.Minute
	err := watchUntilCrash(t, b, victim, job("node-1", true))
	typ, nonRetryable := errorType(t, err)
	if typ != activities.FailoverError || !nonRetryable || !strings.Contains(err.Error(), "node node-1 is down") ||
		!strings.Contains(err.Error(), "node-2 can take over") {
		t.Fatalf("error = %v, want a failover that says node-1 is down and node-2 takes over", err)
	}
	// The standby's health was checked, and recorded, on the way.
	if n, err := b.store.Node(context.Background(), "node-2"); err != nil || n.Status != store.NodeOnline {
		t.Errorf("node-2 after the check: %+v, %v; want online", n, err)
	}
}

// A dead agent is not left at once where that would lose more than the
// grace: on a local pool (its partial data is on its own disk, which its
// restarted agent resumes), when it is the pool's only node, or when the
// pool's other node already failed in this download (the pick would
// refuse it). Each waits the grace and then fails over as unreachable.
func TestWatchWaitsTheGraceForADeadAgentWhenNoNodeCanTakeOver(t *testing.T) {
	cases := []struct {
		name   string
		shared bool
		others int
		failed []string
	}{
		{"local pool", false, 1, nil},
		{"only node of the shared pool", true, 0, nil},
		{"the other node already failed", true, 1, []string{"node-2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			victim := newFakeAgent(t, "node-1", "pool-1")
			victim.script = []agentclient.Download{running(100, 1000)}
			agents := []*fakeAgent{victim}
			if c.others > 0 {
				agents = append(agents, newFakeAgent(t, "node-2", "pool-1"))
			}
			b := newBench(t, c.shared, agents...)
			b.acts.Settings.NodeGrace = 2 * time.Second
			j := job("node-1", c.shared)
			j.Failed = c.failed
			start := time.Now()
			err := watchUntilCrash(t, b, victim, j)
			if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "node-1 unreachable for") {
				t.Fatalf("error = %v, want a failover after the grace", err)
			}
			if took := time.Since(start); took < 2*time.Second {
				t.Fatalf("failed over after %s, before the 2s grace", took)
			}
		})
	}
}

// A poll whose connection drops is no crash while the agent still
// answers its health check (a proxy or a connection that broke): the
// watch carries on with the node, the grace (five minutes) never ends it.
func TestWatchCarriesOnAfterDroppedPollsWhileTheAgentAnswers(t *testing.T) {
	victim, standby := newFakeAgent(t, "node-1", "pool-1"), newFakeAgent(t, "node-2", "pool-1")
	victim.script = []agentclient.Download{running(100, 1000),
		{ID: "img-1", State: agentclient.StateCompleted, BytesDone: 1000, BytesTotal: 1000, Path: "/p/x", Checksum: sum256}}
	victim.drops = 5
	b := newBench(t, true, victim, standby)
	b.acts.Settings.NodeGrace = 5 * time.Minute
	fin, err := b.watch(job("node-1", true))
	if err != nil || fin.NodeID != "node-1" || fin.SizeBytes != 1000 {
		t.Fatalf("watch = %+v, %v; want node-1's completed job", fin, err)
	}
	victim.set(func(f *fakeAgent) {
		if f.drops != 0 {
			t.Errorf("%d polls left to drop: the watch did not poll through them", f.drops)
		}
	})
}

// A frozen agent (SIGSTOP: connections accepted, nothing answered) is
// never taken for dead: the watch waits the grace, counted from the first
// poll that got no answer, and fails over when it ends — not a poll
// timeout later, as when the grace began only once that poll gave up.
func TestWatchFailsOverFromAFrozenAgentWhenTheGraceEnds(t *testing.T) {
	victim, standby := newFakeAgent(t, "node-1", "pool-1"), newFakeAgent(t, "node-2", "pool-1")
	victim.script = []agentclient.Download{running(100, 1000)}
	b := newBench(t, true, victim, standby)
	const grace, pollTimeout = 8 * time.Second, 4 * time.Second
	b.acts.Settings.NodeGrace = grace
	b.acts.Settings.HeartbeatTimeout = 3 * pollTimeout // the watch polls with a third of it
	go func() {
		<-victim.polled
		victim.set(func(f *fakeAgent) { f.frozen = true })
	}()
	_, err := b.watch(job("node-1", true))
	end := time.Now()
	if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "node-1 unreachable for") ||
		!strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("error = %v, want a failover of a node that did not answer, after the grace", err)
	}
	var first time.Time
	victim.set(func(f *fakeAgent) { first = f.firstFrozen })
	took := end.Sub(first)
	if took < grace {
		t.Fatalf("failed over %s after the first unanswered poll, before the %s grace", took, grace)
	}
	// Counted from when the unanswered poll gave up, the grace would end
	// at least a poll timeout later still.
	if took >= grace+pollTimeout {
		t.Fatalf("failed over %s after the first unanswered poll: the grace (%s) began only when that poll timed out (%s)", took, grace, pollTimeout)
	}
}
