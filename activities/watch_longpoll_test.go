package activities_test

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
)

// realAgentBench is a bench whose node-1 is a real agent process (with the
// credential the worker derives from its secret), and a mirror.
func realAgentBench(t *testing.T, settings func(*activities.Settings)) (*bench, *testenv.Agent, *testenv.Upstream) {
	t.Helper()
	agent := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-1", AllowPrivateNetworks: true,
		Token: nodeauth.Credential("node-token", "node-1"), Args: []string{"--stall-timeout", "1m"}})
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateNode(ctx, &store.Node{ID: "node-1", Address: agent.Address()}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePool(ctx, &store.Pool{ID: "pool-1", Type: "local"}, []string{"node-1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateImage(ctx, &store.Image{ID: "img-1", Name: "x", SourceKey: "url:x", PoolID: "pool-1", FileName: "x.qcow2"}); err != nil {
		t.Fatal(err)
	}
	b := newBench(t, false, newFakeAgent(t, "unused", "unused-pool"))
	b.store = st
	b.acts.Store = st
	b.acts.Settings.HeartbeatTimeout = time.Minute // polls of 10 s, long-polls of 5 s
	b.acts.Settings.PollInterval = time.Second     // as in production: what the long-poll replaces
	if settings != nil {
		settings(&b.acts.Settings)
	}
	return b, agent, testenv.NewUpstream(t)
}

// startOn starts the download of data on the agent, trickled by fault, and
// returns the job the watch follows, with the agent's features as the pick
// would have judged them.
func startOn(t *testing.T, agent *testenv.Agent, up *testenv.Upstream, data []byte, f testenv.Fault) activities.Job {
	t.Helper()
	url := up.AddFile("x.qcow2", data)
	up.SetFault("x.qcow2", f)
	ctx := context.Background()
	h, err := agent.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j := job("node-1", false)
	j.URL, j.Checksum, j.SizeBytes, j.NodeFeatures = url, testenv.SHA256(data), int64(len(data)), h.Features
	if _, err := agent.Client().StartDownload(ctx, agentclient.DownloadRequest{ID: j.DownloadID, URL: url, PoolID: "pool-1",
		FileName: j.FileName, Checksum: j.Checksum}); err != nil {
		t.Fatal(err)
	}
	return j
}

// agentMetric reads one sample of the agent's /metrics (0 when absent).
func agentMetric(t *testing.T, agent *testenv.Agent, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, agent.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+agent.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(b.String())
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

const getDownload = `cloudimages_nodeagent_http_requests_total{route="GET /v1/downloads/{id}"}`

// TestWatchLongPollsARealAgent: against an agent with long_poll, the watch
// follows a trickled download to its end with long-polls: its requests
// are about one per second of progress plus one per change of state
// (polling every 50 ms, as this bench's settings would, makes twenty a
// second), it signals and records the progress it saw, and it comes back
// with the published file.
func TestWatchLongPollsARealAgent(t *testing.T) {
	b, agent, up := realAgentBench(t, func(s *activities.Settings) { s.PollInterval = 50 * time.Millisecond })
	data := testenv.QCOW2Image(6<<20, 81)
	j := startOn(t, agent, up, data, testenv.Fault{BytesPerSecond: 2 << 20})
	start := time.Now()
	fin, err := b.watch(j)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if fin.NodeID != "node-1" || fin.SizeBytes != int64(len(data)) || fin.Checksum != j.Checksum {
		t.Fatalf("finished = %+v", fin)
	}
	gets := agentMetric(t, agent, getDownload)
	progress := agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="progress"}`)
	// queued, running, verifying, completed and the first answer: at most
	// five answers that are not byte progress; the rest at most one a second.
	if limit := took.Seconds() + 5; gets > limit {
		t.Fatalf("%v GETs in %s: want at most %.0f (one a second of progress, one per change of state)", gets, took, limit)
	}
	if progress < 1 {
		t.Fatalf("no long-poll answered with byte progress in a %s download (%v GETs)", took, gets)
	}
	var moving int
	for _, u := range b.signals.got {
		if u.State == agentclient.StateRunning && u.BytesDone > 0 && u.BytesDone < int64(len(data)) {
			moving++
		}
	}
	if moving == 0 {
		t.Fatalf("no progress signalled while the bytes moved: %+v", b.signals.got)
	}
	if img, _ := b.store.Image(context.Background(), "img-1"); img.BytesDone == 0 {
		t.Fatal("no progress written to the image record")
	}
}

// TestWatchPollsAnAgentWithoutLongPoll: a node whose health names no
// long_poll gets plain GETs, never ?wait= (the contract: send an agent
// only what it supports), and the watch still follows it to its end.
func TestWatchPollsAnAgentWithoutLongPoll(t *testing.T) {
	b, agent, up := realAgentBench(t, func(s *activities.Settings) { s.PollInterval = 200 * time.Millisecond })
	data := testenv.QCOW2Image(2<<20, 82)
	j := startOn(t, agent, up, data, testenv.Fault{BytesPerSecond: 2 << 20})
	j.NodeFeatures = nil // as the pick judges an agent from before long_poll
	fin, err := b.watch(j)
	if err != nil || fin.SizeBytes != int64(len(data)) {
		t.Fatalf("watch = %+v, %v", fin, err)
	}
	if n := agentMetric(t, agent, "cloudimages_nodeagent_long_polls_waiting") + sumLongPolls(t, agent); n != 0 {
		t.Fatalf("%v long-polls sent to a node whose features lack long_poll", n)
	}
	if gets := agentMetric(t, agent, getDownload); gets < 2 {
		t.Fatalf("%v GETs: the watch did not poll", gets)
	}
}

func sumLongPolls(t *testing.T, agent *testenv.Agent) float64 {
	var n float64
	for _, a := range []string{"changed", "progress", "timeout", "gone", "stopping"} {
		n += agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="`+a+`"}`)
	}
	return n
}

// TestWatchFallsBackWhenTheAgentAnswersWithoutVersion: the pick saw
// long_poll, but the agent answering now does not long-poll (it was
// downgraded): its answers carry no version and come at once. The watch
// notices and polls once a PollInterval rather than asking in a tight
// loop.
func TestWatchFallsBackWhenTheAgentAnswersWithoutVersion(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	agent.script = []agentclient.Download{running(100, 1000)}
	b := newBench(t, false, agent)
	b.acts.Settings.PollInterval = 200 * time.Millisecond
	j := job("node-1", false)
	j.NodeFeatures = []string{agentclient.FeatureLongPoll}
	go func() {
		time.Sleep(time.Second)
		agent.set(func(f *fakeAgent) {
			f.script = []agentclient.Download{{ID: "img-1", State: agentclient.StateCompleted, BytesDone: 1000, BytesTotal: 1000, Path: "/p/x", Checksum: sum256}}
		})
	}()
	start := time.Now()
	if _, err := b.watch(j); err != nil {
		t.Fatal(err)
	}
	// Polling every 200 ms: about one GET per 200 ms of the watch (a
	// tight loop would have made thousands).
	if got, limit := agent.gets(), int(time.Since(start)/(200*time.Millisecond))+3; got > limit {
		t.Fatalf("%d GETs in %s: want at most %d", got, time.Since(start), limit)
	}
	if waits := agent.waits(); waits != 1 {
		t.Fatalf("%d GETs asked to wait; want only the first, before the watch saw the agent has no versions", waits)
	}
}

// TestWatchCancelledEndsItsPendingLongPoll: the activity is cancelled
// (its context ends) while a long-poll waits at the agent for a download
// that does not move: the request ends with it — the agent counts the
// long-poll gone, not timed out — and the watch returns.
func TestWatchCancelledEndsItsPendingLongPoll(t *testing.T) {
	b, agent, up := realAgentBench(t, nil)
	data := testenv.QCOW2Image(4<<20, 83)
	j := startOn(t, agent, up, data, testenv.Fault{StallAfterBytes: 1 << 20})
	actx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.env.SetWorkerOptions(worker.Options{BackgroundActivityContext: actx})
	go func() {
		for agentMetric(t, agent, "cloudimages_nodeagent_long_polls_waiting") < 1 {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	_, err := b.watch(j)
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("watch = %v; want it cancelled", err)
	}
	waitFor(t, "the agent to see the long-poll go", func() bool {
		return agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="gone"}`) == 1
	})
	if n := agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="timeout"}`); n != 0 {
		t.Fatalf("%v long-polls waited out their wait: the cancel did not end the one in flight", n)
	}
}

// TestWatchEndsItsPendingLongPollWhenTheWorkerStops: the worker stopping
// gives the attempt back at once, long-poll in flight or not.
func TestWatchEndsItsPendingLongPollWhenTheWorkerStops(t *testing.T) {
	b, agent, up := realAgentBench(t, nil)
	data := testenv.QCOW2Image(4<<20, 84)
	j := startOn(t, agent, up, data, testenv.Fault{StallAfterBytes: 1 << 20})
	stop := make(chan struct{})
	b.env.SetWorkerStopChannel(stop)
	go func() {
		for agentMetric(t, agent, "cloudimages_nodeagent_long_polls_waiting") < 1 {
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
	}()
	_, err := b.watch(j)
	if typ, _ := errorType(t, err); typ != "worker_stopping" {
		t.Fatalf("error = %v, want worker_stopping", err)
	}
	waitFor(t, "the agent to see the long-poll go", func() bool {
		return agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="gone"}`) == 1
	})
	if n := agentMetric(t, agent, `cloudimages_nodeagent_long_polls_total{answer="timeout"}`); n != 0 {
		t.Fatalf("%v long-polls waited out their wait: the worker's stop did not end the one in flight", n)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
