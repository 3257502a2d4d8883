package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workflows"
)

// TestTopologySurvivesItsFaults runs cloudimages in its production
// topology — a real Temporal server on PostgreSQL (bin/temporal-server),
// two API replicas and two workers on PostgreSQL, two node agents — and
// takes its parts away one after another while downloads run: a worker
// killed (-9), an API replica killed (-9) while the other keeps serving,
// Temporal killed and started again, and PostgreSQL cut off for everyone
// (a TCP proxy in front of it resets and refuses every connection). After
// each fault the downloads in flight finish READY with the right bytes,
// and the mirror served each file exactly once: nothing was downloaded
// twice. Without bin/temporal-server or PostgreSQL it is skipped locally
// and fails in CI.
func TestTopologySurvivesItsFaults(t *testing.T) {
	top := testenv.StartTopology(t, testenv.TopologyOptions{Stack: testenv.StackOptions{
		WorkerMetrics: true,
		// A killed worker's downloads carry on on the other one within
		// seconds rather than the default 20.
		WorkerArgs: []string{"--heartbeat-timeout", "5s"},
	}})
	up := testenv.NewUpstream(t)
	var files []mirrorFile
	var images []api.Image
	// start posts n downloads through API replica r, trickled by the
	// mirror so that they are still running when the fault comes, and
	// waits until each one moves bytes.
	start := func(phase string, n, r int) []api.Image {
		t.Helper()
		var started []api.Image
		for i := range n {
			f := addImage(up, fmt.Sprintf("%s-%d.qcow2", phase, i), 3<<20)
			up.SetFault(f.name, testenv.Fault{BytesPerSecond: 512 << 10})
			pool := "shared"
			if i%2 == 1 {
				pool = fmt.Sprintf("local-%d", 1+len(images)%2)
			}
			var img api.Image
			top.APIClient(r).MustDo(t, http.MethodPost, "/v1/images", map[string]any{
				"url": f.url, "name": strings.TrimSuffix(f.name, ".qcow2"), "checksum": f.sum, "pool_id": pool}, &img, http.StatusAccepted)
			files, images, started = append(files, f), append(images, img), append(started, img)
		}
		for i, img := range started {
			f := files[len(files)-len(started)+i]
			eventually(t, time.Minute, img.ID+" moving bytes on a node", func() bool {
				got := getAPIImage(t, top.APIClient(r), img.ID)
				if got.Terminal() {
					t.Fatalf("image %s ended %s (%+v) before its fault", img.ID, got.Status, got.Error)
				}
				return got.Status == "DOWNLOADING" && imageNode(got) != "" && up.BytesServed(f.name) >= 64<<10
			})
		}
		return started
	}
	waitReady := func(c *testenv.APIClient, imgs []api.Image) {
		t.Helper()
		for _, img := range imgs {
			waitAPIStatus(t, c, img.ID, "READY", 5*time.Minute)
		}
	}

	t.Run("worker killed", func(t *testing.T) {
		imgs := start("worker", 2, 0)
		// Kill the worker that watches a download: its /metrics say so.
		victim := -1
		eventually(t, 30*time.Second, "a worker watching a download", func() bool {
			for i, w := range top.Workers {
				m := scrape(t, top.WorkerMetricsURL(w.Name()))
				if m.sum("cloudimages_worker_activities_running", `activity="WatchDownload"`) > 0 {
					victim = i
					return true
				}
			}
			return false
		})
		top.Workers[victim].Kill()
		waitReady(top.API, imgs)
		top.Workers[victim].Start()
	})

	t.Run("API replica killed", func(t *testing.T) {
		imgs := start("api", 2, 0)
		top.APIServers[0].Kill()
		other := top.APIClient(1)
		// The other replica serves the images the killed one created, and
		// takes new ones.
		for _, img := range imgs {
			if got := getAPIImage(t, other, img.ID); got.ID != img.ID {
				t.Fatalf("replica 2 answers image %s for %s", got.ID, img.ID)
			}
		}
		imgs = append(imgs, start("api-other", 1, 1)...)
		waitReady(other, imgs)
		top.APIServers[0].Start()
	})

	t.Run("Temporal restarted", func(t *testing.T) {
		imgs := start("temporal", 2, 1)
		top.Temporal.Kill()
		top.Temporal.Start()
		waitReady(top.API, imgs)
	})

	t.Run("PostgreSQL cut off", func(t *testing.T) {
		imgs := start("postgres", 2, 0)
		before := top.Postgres.Cuts()
		top.Postgres.Cut()
		// Long enough for every part to find its connections gone and
		// new ones refused; the downloads keep moving on the agents.
		time.Sleep(8 * time.Second)
		top.Postgres.Restore()
		if top.Postgres.Cuts() == before {
			t.Fatal("no connection to PostgreSQL was cut: the outage touched nothing")
		}
		waitReady(top.API, imgs)
	})
	if t.Failed() {
		return
	}

	for i, img := range images {
		img = getImage(t, top.Stack, img.ID)
		checkReadyFile(t, img, files[i])
		if got := up.BytesServed(files[i].name); got != int64(len(files[i].data)) {
			t.Errorf("the mirror served %d bytes of %s (%d bytes): downloaded more than once", got, files[i].name, len(files[i].data))
		}
	}

	// Visibility on PostgreSQL (SQL advanced visibility) answers queries
	// on the search attributes the workers registered.
	c := top.TemporalClient()
	eventually(t, time.Minute, "every image's workflow listed READY by its search attributes", func() bool {
		n := 0
		for _, img := range images {
			resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default",
				Query: fmt.Sprintf(`WorkflowType = '%s' AND ImageId = '%s' AND PoolId = '%s' AND ImageStatus = 'READY'`,
					workflows.WorkflowType, img.ID, img.PoolID)})
			if err == nil && len(resp.GetExecutions()) == 1 {
				n++
			}
		}
		return n == len(images)
	})

	// The workers count what they ran on /metrics.
	var completed float64
	for _, w := range top.Workers {
		completed += scrape(t, top.WorkerMetricsURL(w.Name())).sum("cloudimages_worker_workflows_finished_total",
			`workflow="`+workflows.WorkflowType+`"`, `outcome="completed"`)
	}
	if completed < 1 {
		t.Errorf("the workers' /metrics count %v completed downloads, want some", completed)
	}
}
