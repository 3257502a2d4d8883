package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workflows"
)

// TestWorkerServesMetrics: a worker started with --metrics-listen serves
// Prometheus /metrics that count the downloads it ran, by outcome, and the
// failed activity attempts by the contract's error code.
func TestWorkerServesMetrics(t *testing.T) {
	s := testenv.StartStack(t, testenv.StackOptions{WorkerMetrics: true})
	up := testenv.NewUpstream(t)
	good := addImage(up, "metrics-good.qcow2", 64<<10)
	bad := addImage(up, "metrics-bad.qcow2", 64<<10)
	bad.sum = testenv.SHA256([]byte("not these bytes"))
	ok := download(t, s, good, "local-1")
	failed := download(t, s, bad, "local-2")
	waitStatus(t, s, ok.ID, "READY", 90*time.Second)
	waitStatus(t, s, failed.ID, "FAILED", 90*time.Second)

	url := s.WorkerMetricsURL(s.Workers[0].Name())
	// The workflow's end is counted once it returned, a moment after the
	// image's status was written.
	eventually(t, 30*time.Second, "both downloads counted on /metrics", func() bool {
		m := scrape(t, url)
		return m.sum("cloudimages_worker_workflows_finished_total", `workflow="`+workflows.WorkflowType+`"`, `outcome="completed"`) == 1 &&
			m.sum("cloudimages_worker_workflows_finished_total", `workflow="`+workflows.WorkflowType+`"`, `outcome="failed"`) == 1
	})
	m := scrape(t, url)
	if n := m.sum("cloudimages_worker_activities_finished_total", `outcome="failed"`, `code="checksum_mismatch"`); n < 1 {
		t.Errorf("no activity attempt counted failed with checksum_mismatch:\n%s", m.grep("cloudimages_worker_activities_finished_total"))
	}
	if n := m.sum("cloudimages_worker_activities_finished_total", `outcome="completed"`); n < 2 {
		t.Errorf("%v activity attempts counted completed, want several:\n%s", n, m.grep("cloudimages_worker_activities_finished_total"))
	}
	if started, finished := m.sum("cloudimages_worker_activities_started_total"), m.sum("cloudimages_worker_activities_finished_total"); started < finished {
		t.Errorf("%v activity attempts started but %v finished", started, finished)
	}
	if n := m.sum("cloudimages_worker_activity_duration_seconds_count"); n < 2 {
		t.Errorf("activity durations observed %v times, want one per attempt", n)
	}
}

// metricsText is a scraped /metrics page.
type metricsText string

func scrape(t *testing.T, url string) metricsText {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return metricsText(b)
}

// sum adds the values of every series of the metric that carries all of
// the labels (`name="value"`); 0 when there is none.
func (m metricsText) sum(name string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(string(m), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && (strings.Contains(series, "{"+l+",") || strings.Contains(series, ","+l+",") ||
				strings.Contains(series, "{"+l+"}") || strings.Contains(series, ","+l+"}"))
		}
		if f, err := strconv.ParseFloat(value, 64); err == nil && matches {
			total += f
		}
	}
	return total
}

// grep returns the lines of one metric, for failure messages.
func (m metricsText) grep(name string) string {
	var out []string
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, name) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
