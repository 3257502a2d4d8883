package nodeagent_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// stalledDownload starts a download whose mirror sends stallAt bytes and
// then nothing (the agent's stall timeout is long), and returns it once
// the agent has written what it got: a job that will not change by itself.
func stalledDownload(t *testing.T, h *harness, id string, stallAt int64) agentclient.Download {
	t.Helper()
	data := testenv.QCOW2Image(4<<20, 71)
	url := h.up.AddFile(id+".qcow2", data)
	h.up.SetFault(id+".qcow2", testenv.Fault{StallAfterBytes: stallAt})
	h.start(agentclient.DownloadRequest{ID: id, URL: url, FileName: id + ".qcow2", Checksum: testenv.SHA256(data)})
	return waitStill(t, h.client, id)
}

// waitStill waits until a running download has bytes and keeps its
// version for a while: its mirror stalled.
func waitStill(t *testing.T, c *agentclient.Client, id string) agentclient.Download {
	t.Helper()
	prev := wait(t, c, id, "running with bytes", func(d agentclient.Download) bool {
		return d.State == agentclient.StateRunning && d.BytesDone > 0
	})
	for range 100 {
		time.Sleep(300 * time.Millisecond)
		d, err := c.Download(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Version == prev.Version && d.State == agentclient.StateRunning {
			return d
		}
		prev = d
	}
	t.Fatalf("download %s never stood still: %+v", id, prev)
	return prev
}

func longStall(c *nodeagent.Config) { c.StallTimeout = time.Minute }

// metric reads one counter (or gauge) of the agent's /metrics; name may
// carry labels as Prometheus prints them.
func metric(t *testing.T, url, token, name string) float64 {
	t.Helper()
	code, body := rawRequest(t, "GET", url+"/metrics", token, "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}

type answer struct {
	d   agentclient.Download
	err error
	in  time.Duration
}

// longPoll asks in the background and sends the answer.
func longPoll(ctx context.Context, c *agentclient.Client, id string, after int64, wait time.Duration) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		start := time.Now()
		d, err := c.DownloadAfter(ctx, id, after, wait)
		out <- answer{d, err, time.Since(start)}
	}()
	return out
}

// waitLongPolls waits until n long-polls wait at the agent.
func waitLongPolls(t *testing.T, url, token string, n float64) {
	t.Helper()
	waitCond(t, "the long-poll to wait at the agent", func() bool {
		return metric(t, url, token, "cloudimages_nodeagent_long_polls_waiting") >= n
	})
}

func TestHealthNamesLongPoll(t *testing.T) {
	h := newHarness(t, nil)
	hl, err := h.client.Health(ctx(t))
	if err != nil || !slices.Contains(hl.Features, agentclient.FeatureLongPoll) {
		t.Fatalf("health features %v (%v): want %q", hl.Features, err, agentclient.FeatureLongPoll)
	}
}

// TestLongPollAnswersAtOnceOnStateChange: a long-poll waiting on a job
// that does not move answers when the job is cancelled, with the new
// state and a higher version, long before its wait is over.
func TestLongPollAnswersAtOnceOnStateChange(t *testing.T) {
	h := newHarness(t, longStall)
	d := stalledDownload(t, h, "lp-state", 1<<20)
	if d.Version == 0 {
		t.Fatalf("download carries no version: %+v", d)
	}
	got := longPoll(ctx(t), h.client, "lp-state", d.Version, agentclient.MaxLongPollWait)
	waitLongPolls(t, h.http.URL, testToken, 1)
	if err := h.client.CancelDownload(ctx(t), "lp-state"); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("long-poll: %v", a.err)
	}
	if a.d.State != agentclient.StateCancelled || a.d.Version <= d.Version {
		t.Fatalf("long-poll answered %s at version %d (had %d); want cancelled at a higher version", a.d.State, a.d.Version, d.Version)
	}
	// A wait that ran out would have taken all of MaxLongPollWait.
	if a.in >= agentclient.MaxLongPollWait {
		t.Fatalf("long-poll answered after %s: it waited out its wait instead of answering the change", a.in)
	}
}

// TestLongPollTimesOutWithTheSameVersion: nothing moves, so the answer
// comes when the wait is over, at the version asked about.
func TestLongPollTimesOutWithTheSameVersion(t *testing.T) {
	h := newHarness(t, longStall)
	d := stalledDownload(t, h, "lp-idle", 1<<20)
	const w = 700 * time.Millisecond
	a := <-longPoll(ctx(t), h.client, "lp-idle", d.Version, w)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.d.Version != d.Version || a.d.State != agentclient.StateRunning || a.d.BytesDone != d.BytesDone {
		t.Fatalf("after the wait: %s %d bytes version %d; want it unchanged (%s %d bytes version %d)",
			a.d.State, a.d.BytesDone, a.d.Version, d.State, d.BytesDone, d.Version)
	}
	if a.in < w {
		t.Fatalf("answered after %s, before its %s wait was over", a.in, w)
	}
	if got := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_long_polls_total{answer="timeout"}`); got != 1 {
		t.Fatalf(`long_polls_total{answer="timeout"} %v, want 1`, got)
	}
}

// TestLongPollThrottlesByteProgress: while only bytes move, each answer
// comes a second after its request at the earliest, with more bytes and a
// higher version; a watcher that asks again at once asks about once a
// second.
func TestLongPollThrottlesByteProgress(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(8<<20, 72)
	url := h.up.AddFile("lp-bytes.qcow2", data)
	h.up.SetFault("lp-bytes.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	h.start(agentclient.DownloadRequest{ID: "lp-bytes", URL: url, FileName: "lp-bytes.qcow2", Checksum: testenv.SHA256(data)})
	d := wait(t, h.client, "lp-bytes", "running", func(d agentclient.Download) bool {
		return d.State == agentclient.StateRunning && d.BytesDone > 0
	})
	progress := 0
	for progress < 3 {
		a := <-longPoll(ctx(t), h.client, "lp-bytes", d.Version, 10*time.Second)
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.d.Version <= d.Version {
			t.Fatalf("answer at version %d, asked after %d: the bytes move, so the version must too", a.d.Version, d.Version)
		}
		if a.d.State != d.State {
			break // it got to its end: a change of state answers at once
		}
		progress++
		if a.in < agentclient.LongPollProgressEvery {
			t.Fatalf("answer %d came after %s with only bytes moved (%d → %d): want at least %s", progress, a.in, d.BytesDone, a.d.BytesDone, agentclient.LongPollProgressEvery)
		}
		if a.d.BytesDone <= d.BytesDone {
			t.Fatalf("answer %d: %d bytes, had %d", progress, a.d.BytesDone, d.BytesDone)
		}
		d = a.d
	}
	if progress == 0 {
		t.Fatal("no answer was byte progress alone: the download ended at the first (trickled at 1 MiB/s, 8 MiB)")
	}
	if got := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_long_polls_total{answer="progress"}`); got != float64(progress) {
		t.Fatalf(`long_polls_total{answer="progress"} %v, want %d`, got, progress)
	}
}

// TestLongPollAnswersAtOnceForAnotherVersion: a version the job does not
// have now (one from before a restart, a guess) answers at once, as does
// after without wait.
func TestLongPollAnswersAtOnceForAnotherVersion(t *testing.T) {
	h := newHarness(t, longStall)
	d := stalledDownload(t, h, "lp-other", 1<<20)
	for _, after := range []int64{0, 1, d.Version + 1000} {
		a := <-longPoll(ctx(t), h.client, "lp-other", after, agentclient.MaxLongPollWait)
		if a.err != nil || a.d.Version != d.Version {
			t.Fatalf("after=%d: %+v %v; want the download at version %d", after, a.d, a.err, d.Version)
		}
		if a.in >= agentclient.MaxLongPollWait {
			t.Fatalf("after=%d: answered after %s, at the end of its wait", after, a.in)
		}
	}
	if code, body := rawRequest(t, "GET", h.http.URL+"/v1/downloads/lp-other?after="+strconv.FormatInt(d.Version, 10), testToken, ""); code != http.StatusOK {
		t.Fatalf("after without wait: %d %s", code, body)
	}
	if got := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_long_polls_total{answer="changed"}`); got != 3 {
		t.Fatalf(`long_polls_total{answer="changed"} %v, want 3 (after without wait does not wait)`, got)
	}
}

func TestLongPollRefusesBadParameters(t *testing.T) {
	h := newHarness(t, longStall)
	stalledDownload(t, h, "lp-bad", 1<<20)
	for _, q := range []string{"wait=soon&after=1", "wait=-1s&after=1", "wait=5s&after=x", "wait=5s&after=-3", "wait=5s", "wait=5&after=1"} {
		code, body := rawRequest(t, "GET", h.http.URL+"/v1/downloads/lp-bad?"+q, testToken, "")
		if code != http.StatusBadRequest || !strings.Contains(body, fault.InvalidRequest) {
			t.Errorf("?%s: %d %s; want 400 invalid_request", q, code, body)
		}
	}
	if code, body := rawRequest(t, "GET", h.http.URL+"/v1/downloads/nothing?wait=1s&after=1", testToken, ""); code != http.StatusNotFound {
		t.Errorf("long-poll of an unknown download: %d %s; want 404", code, body)
	}
}

// TestLongPollNeedsTheToken: a long-poll is a GET like any other; without
// the node's credential it is refused before it waits.
func TestLongPollNeedsTheToken(t *testing.T) {
	h := newHarness(t, longStall)
	d := stalledDownload(t, h, "lp-auth", 1<<20)
	url := h.http.URL + "/v1/downloads/lp-auth?wait=20s&after=" + strconv.FormatInt(d.Version, 10)
	for _, token := range []string{"", "wrong-token"} {
		start := time.Now()
		code, body := rawRequest(t, "GET", url, token, "")
		if code != http.StatusUnauthorized || !strings.Contains(body, fault.Unauthorized) {
			t.Errorf("token %q: %d %s; want 401 unauthorized", token, code, body)
		}
		if time.Since(start) >= 20*time.Second {
			t.Errorf("token %q: refused only after the wait", token)
		}
	}
	if got := metric(t, h.http.URL, testToken, "cloudimages_nodeagent_long_polls_waiting"); got != 0 {
		t.Fatalf("long_polls_waiting %v after refused requests, want 0", got)
	}
	if _, body := rawRequest(t, "GET", h.http.URL+"/metrics", testToken, ""); strings.Contains(body, "cloudimages_nodeagent_long_polls_total{") {
		t.Fatalf("refused requests were counted as long-polls")
	}
}

// TestRequestsAreCountedByRoute: the agent counts what watching costs it.
func TestRequestsAreCountedByRoute(t *testing.T) {
	h := newHarness(t, longStall)
	stalledDownload(t, h, "lp-count", 1<<20)
	before := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_http_requests_total{route="GET /v1/downloads/{id}"}`)
	for range 3 {
		if _, err := h.client.Download(ctx(t), "lp-count"); err != nil {
			t.Fatal(err)
		}
	}
	if got := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_http_requests_total{route="GET /v1/downloads/{id}"}`); got != before+3 {
		t.Fatalf("GET /v1/downloads/{id} counted %v, want %v", got, before+3)
	}
}

// TestLongPollAnswersWhenTheAgentStops: a real agent stopped with SIGTERM
// answers its pending long-polls at once instead of holding its shutdown
// until they time out (and then cutting them off).
func TestLongPollAnswersWhenTheAgentStops(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 73)
	url := up.AddFile("lp-stop.qcow2", data)
	up.SetFault("lp-stop.qcow2", testenv.Fault{StallAfterBytes: 1 << 20})
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true, Args: []string{"--stall-timeout", "1m"}})
	c := agent.Client()
	if _, err := c.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "lp-stop", URL: url, PoolID: "pool-1", FileName: "lp-stop.qcow2", Checksum: testenv.SHA256(data)}); err != nil {
		t.Fatal(err)
	}
	d := waitStill(t, c, "lp-stop")
	got := longPoll(ctx(t), c, "lp-stop", d.Version, agentclient.MaxLongPollWait)
	waitLongPolls(t, agent.URL(), agent.Token(), 1)
	agent.Stop()
	a := <-got
	if a.err != nil {
		t.Fatalf("long-poll pending while the agent stopped: %v; want an answer", a.err)
	}
	if a.d.ID != "lp-stop" {
		t.Fatalf("answer %+v", a.d)
	}
}

// TestLongPollFollowsADownloadStartedAgain: a paused download started
// again is a new job under the same id; a long-poll waiting on the paused
// one answers with the new one at once.
func TestLongPollFollowsADownloadStartedAgain(t *testing.T) {
	h := newHarness(t, longStall)
	d := stalledDownload(t, h, "lp-resume", 1<<20)
	p, err := h.client.PauseDownload(ctx(t), "lp-resume")
	if err != nil || p.State != agentclient.StatePaused {
		t.Fatalf("pause: %+v %v", p, err)
	}
	got := longPoll(ctx(t), h.client, "lp-resume", p.Version, agentclient.MaxLongPollWait)
	waitLongPolls(t, h.http.URL, testToken, 1)
	if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "lp-resume", URL: h.up.URL() + "/lp-resume.qcow2", PoolID: "pool-1",
		FileName: "lp-resume.qcow2", Checksum: d.Checksum}); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if (a.d.State != agentclient.StateRunning && a.d.State != agentclient.StateQueued) || a.d.Version <= p.Version {
		t.Fatalf("long-poll answered %s at version %d (asked after %d); want the resumed download", a.d.State, a.d.Version, p.Version)
	}
	if a.in >= agentclient.MaxLongPollWait {
		t.Fatalf("answered after %s: it waited out its wait", a.in)
	}
	if got := metric(t, h.http.URL, testToken, `cloudimages_nodeagent_long_polls_total{answer="changed"}`); got != 1 {
		t.Fatalf(`long_polls_total{answer="changed"} %v, want 1`, got)
	}
}
