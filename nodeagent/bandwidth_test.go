package nodeagent_test

import (
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

func TestParseBandwidth(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"0", 0, true},
		{"50MB/s", 50_000_000, true},
		{"50MB", 50_000_000, true},
		{"10MiB/s", 10 << 20, true},
		{"400Mbit", 50_000_000, true},
		{"400Mbit/s", 50_000_000, true},
		{"1Gbps", 125_000_000, true},
		{"1.5MB/s", 1_500_000, true},
		{"64KiB/s", 64 << 10, true},
		{"1000000", 1_000_000, true},
		{"1KB/s", 0, false}, // below the smallest cap
		{"fast", 0, false},
		{"-5MB/s", 0, false},
		{"5 parsecs", 0, false},
	}
	for _, tc := range cases {
		got, err := nodeagent.ParseBandwidth(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// minWindow is the least time a token bucket of rate bytes a second with
// a burst of a tenth of a second's worth lets n bytes through in: n is at
// most rate*window + burst. (Slower is always possible on a busy machine;
// faster means the limit does not hold.)
func minWindow(n, rate int64) time.Duration {
	burst := rate / 10
	return time.Duration(float64(n-burst) / float64(rate) * float64(time.Second))
}

// TestAgentBandwidthIsSharedByAllDownloads: with --max-bandwidth, two
// downloads at once together move no more than the cap allows.
func TestAgentBandwidthIsSharedByAllDownloads(t *testing.T) {
	up := testenv.NewUpstream(t)
	const rate, size = 2_000_000, 2 << 20
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true, Env: []string{"CLOUDIMAGES_MAX_BANDWIDTH=2MB/s"}})
	c := agent.Client()
	var first time.Time
	var last time.Time
	var ids []string
	for i, name := range []string{"bw-a.qcow2", "bw-b.qcow2"} {
		data := testenv.QCOW2Image(size, int64(80+i))
		url := up.AddFile(name, data)
		req := agentclient.DownloadRequest{ID: name[:4], URL: url, PoolID: "pool-1", FileName: name, Checksum: testenv.SHA256(data)}
		if _, err := c.StartDownload(ctx(t), req); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, req.ID)
	}
	for _, id := range ids {
		d := waitFinished(t, c, id)
		if d.State != agentclient.StateCompleted || d.StartedAt == nil || d.FinishedAt == nil {
			t.Fatalf("%s: %s %+v", id, d.State, d.Error)
		}
		if first.IsZero() || d.StartedAt.Before(first) {
			first = *d.StartedAt
		}
		if d.FinishedAt.After(last) {
			last = *d.FinishedAt
		}
	}
	took, least := last.Sub(first), minWindow(2*size, rate)
	t.Logf("two %d-byte downloads under a %d B/s cap took %v together (the cap allows no less than %v)", size, rate, took, least)
	if took < least {
		t.Errorf("two downloads moved %d bytes in %v: faster than --max-bandwidth allows (at least %v)", 2*size, took, least)
	}
}

// TestAgentPerDownloadCap: a request's max_bytes_per_second caps that
// download on an agent without --max-bandwidth; a cap below the smallest
// is refused.
func TestAgentPerDownloadCap(t *testing.T) {
	up := testenv.NewUpstream(t)
	const rate, size = 1_000_000, 2 << 20
	data := testenv.QCOW2Image(size, 82)
	url := up.AddFile("cap.qcow2", data)
	agent := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true})
	c := agent.Client()
	if h, err := c.Health(ctx(t)); err != nil || !h.Supports(agentclient.FeatureBandwidthLimit) {
		t.Fatalf("health %+v, %v: want the feature %q", h, err, agentclient.FeatureBandwidthLimit)
	}
	req := agentclient.DownloadRequest{ID: "cap", URL: url, PoolID: "pool-1", FileName: "cap.qcow2", Checksum: testenv.SHA256(data), MaxBytesPerSecond: rate}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, c, req.ID)
	assertPublished(t, d, agent.PoolDir("pool-1"), data, req.Checksum)
	took, least := d.FinishedAt.Sub(*d.StartedAt), minWindow(size, rate)
	t.Logf("a %d-byte download capped at %d B/s took %v (the cap allows no less than %v)", size, rate, took, least)
	if took < least {
		t.Errorf("the download took %v: faster than its cap allows (at least %v)", took, least)
	}
	bad := req
	bad.ID, bad.MaxBytesPerSecond = "too-slow", 100
	if _, err := c.StartDownload(ctx(t), bad); faultCode(err) != fault.InvalidRequest {
		t.Errorf("max_bytes_per_second 100: %v; want invalid_request", err)
	}
}
