package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workflows"
)

// Sizes and rates: a trickled download lasts about six seconds, long
// enough to hit it in the middle, short enough for the suite's budget.
const (
	smallSize   = 256 << 10
	trickleSize = 3 << 20
	trickleRate = 512 << 10
)

// faultStack is one stack for the scenarios below, which run one after
// the other: each leaves the stack as it found it (every process running).
// Short grace and timeouts make failover and re-attachment take seconds.
func faultStack(t *testing.T, databaseURL string) *testenv.Stack {
	return testenv.StartStack(t, testenv.StackOptions{
		DatabaseURL:     databaseURL,
		PersistTemporal: true,
		WorkerArgs:      []string{"--node-grace", "2s", "--heartbeat-timeout", "6s", "--no-node-timeout", "4s"},
	})
}

func TestDownloadsEndToEnd(t *testing.T) {
	s := faultStack(t, "")
	up := testenv.NewUpstream(t)

	t.Run("shared and local pools end READY with the file on disk", func(t *testing.T) {
		shared, local := addImage(up, "plain-shared.qcow2", smallSize), addImage(up, "plain-local.qcow2", smallSize)
		a := download(t, s, shared, "shared")
		b := download(t, s, local, "local-2")
		imgA := waitStatus(t, s, a.ID, "READY", time.Minute)
		imgB := waitStatus(t, s, b.ID, "READY", time.Minute)
		checkReadyFile(t, imgA, shared)
		checkReadyFile(t, imgB, local)
		if imageNode(imgB) != "node-2" || !strings.HasPrefix(imgB.Path, s.PoolDir("local-2", "node-2")) {
			t.Errorf("local-2 image on %s at %s, want node-2 under %s", imageNode(imgB), imgB.Path, s.PoolDir("local-2", "node-2"))
		}
		if !strings.HasPrefix(imgA.Path, s.PoolDir("shared", "node-1")) {
			t.Errorf("shared image at %s, not in the shared pool %s", imgA.Path, s.PoolDir("shared", "node-1"))
		}
		var out string
		eventually(t, 30*time.Second, "temporal workflow list by PoolId and ImageStatus finds "+b.WorkflowID, func() bool {
			out, _ = s.TemporalCLI("workflow", "list", "--query", `PoolId="local-2" AND ImageStatus="READY"`)
			return strings.Contains(out, b.WorkflowID)
		})
		checkNoData(t, s, "shared", "")
	})

	t.Run("kill -9 of the agent fails over and resumes on the shared pool", func(t *testing.T) {
		agentKillFailsOver(t, s, up, "agent-kill.qcow2")
	})

	t.Run("kill -9 of the worker: a new worker finishes without restarting the transfer", func(t *testing.T) {
		f := addImage(up, "worker-kill.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		img := download(t, s, f, "local-1")
		waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
		s.Workers[0].Kill()
		s.Workers[0].Start()

		done := waitStatus(t, s, img.ID, "READY", 90*time.Second)
		checkReadyFile(t, done, f)
		if n, served := up.Requests(f.name), up.BytesServed(f.name); n != 1 || served != int64(len(f.data)) {
			t.Errorf("the mirror answered %d requests and %d bytes for a %d-byte file, want one transfer", n, served, len(f.data))
		}
	})

	t.Run("a wrong checksum fails with checksum_mismatch and leaves nothing", func(t *testing.T) {
		f := addImage(up, "wrong-sum.qcow2", smallSize)
		f.sum = testenv.SHA256([]byte("something else"))
		img := download(t, s, f, "local-1")
		done := waitStatus(t, s, img.ID, "FAILED", time.Minute)
		wantError(t, done, "checksum_mismatch")
		checkNoData(t, s, "local-1", done.FileName)
	})

	t.Run("a mirror that corrupts the file fails with checksum_mismatch on the shared pool", func(t *testing.T) {
		f := addImage(up, "corrupt.qcow2", smallSize)
		up.SetFault(f.name, testenv.Fault{WrongBytes: true})
		img := download(t, s, f, "shared")
		done := waitStatus(t, s, img.ID, "FAILED", time.Minute)
		wantError(t, done, "checksum_mismatch")
		checkNoData(t, s, "shared", done.FileName)
	})

	t.Run("a mirror 404 fails at once with upstream_not_found", func(t *testing.T) {
		f := mirrorFile{name: "gone.qcow2", url: up.FileURL("gone.qcow2"), sum: testenv.SHA256([]byte("gone"))}
		start := time.Now()
		img := download(t, s, f, "shared")
		done := waitStatus(t, s, img.ID, "FAILED", time.Minute)
		wantError(t, done, "upstream_not_found")
		// "At once": no retry loop, no failover round; the bound is loose
		// for a loaded CI machine.
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("a 404 took %s to fail", took)
		}
		checkNoData(t, s, "shared", done.FileName)
	})

	t.Run("DELETE mid-download cancels and removes the partial data", func(t *testing.T) {
		f := addImage(up, "cancel-api.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		img := download(t, s, f, "local-1")
		waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
		s.API.MustDo(t, http.MethodDelete, "/v1/images/"+img.ID, nil, nil, http.StatusAccepted)
		done := waitStatus(t, s, img.ID, "CANCELLED", time.Minute)
		eventually(t, 30*time.Second, "partial data removed", func() bool {
			return len(partials(t, s.PoolDir("local-1", "node-1"))) == 0
		})
		checkNoData(t, s, "local-1", done.FileName)
	})

	t.Run("temporal workflow cancel mid-download cancels and removes the partial data", func(t *testing.T) {
		f := addImage(up, "cancel-cli.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		img := download(t, s, f, "shared")
		waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
		if out, err := s.TemporalCLI("workflow", "cancel", "--workflow-id", img.WorkflowID); err != nil {
			t.Fatalf("temporal workflow cancel: %v\n%s", err, out)
		}
		done := waitStatus(t, s, img.ID, "CANCELLED", time.Minute)
		eventually(t, 30*time.Second, "partial data removed", func() bool {
			return len(partials(t, s.PoolDir("shared", "node-1"))) == 0
		})
		checkNoData(t, s, "shared", done.FileName)
	})

	t.Run("20 identical POSTs at once make one image, one workflow, one file", func(t *testing.T) {
		f := addImage(up, "stampede.qcow2", smallSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: smallSize}) // still live while the POSTs land
		body := map[string]any{"url": f.url, "name": "stampede", "checksum": f.sum, "pool_id": "shared"}
		var wg sync.WaitGroup
		ids, statuses := make([]string, 20), make([]int, 20)
		for i := range 20 {
			wg.Go(func() {
				var img api.Image
				statuses[i], _ = s.API.Do(t.Context(), http.MethodPost, "/v1/images", body, &img)
				ids[i] = img.ID
			})
		}
		wg.Wait()
		created := 0
		for i := range 20 {
			if statuses[i] == http.StatusAccepted {
				created++
			} else if statuses[i] != http.StatusOK {
				t.Errorf("POST %d: status %d", i, statuses[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("POST %d answered image %q, POST 0 %q", i, ids[i], ids[0])
			}
		}
		if created != 1 {
			t.Errorf("%d POSTs answered 202 (a download started), want 1", created)
		}
		done := waitStatus(t, s, ids[0], "READY", time.Minute)
		checkReadyFile(t, done, f)
		var list struct{ Items []api.Image }
		s.API.MustDo(t, http.MethodGet, "/v1/images?pool_id=shared", nil, &list, http.StatusOK)
		same := 0
		for _, img := range list.Items {
			if img.SourceURL == f.url {
				same++
			}
		}
		if same != 1 {
			t.Errorf("%d images of %s in the pool, want 1", same, f.url)
		}
		out, err := s.TemporalCLI("workflow", "count", "--query", `ImageId="`+ids[0]+`"`)
		if err != nil || !strings.Contains(out, "Total: 1") {
			t.Errorf("temporal workflow count for the image: %v\n%s", err, out)
		}
		if n := up.Requests(f.name); n != 1 {
			t.Errorf("the mirror answered %d requests, want 1", n)
		}
	})

	t.Run("no node online fails with no_node_available after the bounded wait", func(t *testing.T) {
		a := s.Agent("node-1")
		a.Stop()
		t.Cleanup(func() { restartAgent(t, s, a) })
		f := addImage(up, "no-node.qcow2", smallSize)
		// Started from the temporal CLI, as an operator would: the API's
		// own check of node status does not get a say.
		id := "no-node-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		input := fmt.Sprintf(`{"url": %q, "name": "no-node", "checksum": %q, "pool_id": "local-1"}`, f.url, f.sum)
		if out, err := s.TemporalCLI("workflow", "start", "--task-queue", workflows.TaskQueue, "--type", workflows.WorkflowType,
			"--workflow-id", workflows.WorkflowID(id), "--input", input); err != nil {
			t.Fatalf("temporal workflow start: %v\n%s", err, out)
		}
		eventually(t, 30*time.Second, "the workflow's image record", func() bool {
			status, _ := s.API.Do(t.Context(), http.MethodGet, "/v1/images/"+id, nil, nil)
			return status == http.StatusOK
		})
		done := waitStatus(t, s, id, "FAILED", time.Minute)
		if !wantError(t, done, "no_node_available") {
			t.FailNow()
		}
		for _, want := range []string{"local-1", "node-1", "Start"} {
			if !strings.Contains(done.Error.Message, want) {
				t.Errorf("the message does not say %q: %s", want, done.Error.Message)
			}
		}
		if up.Requests(f.name) != 0 {
			t.Error("the mirror was asked for the file although no node could take it")
		}
	})

	// Last: right after a restart, Temporal may take a few seconds to
	// answer the API again, which is not what the scenarios above test.
	t.Run("the Temporal server stopped and started mid-download", func(t *testing.T) {
		f := addImage(up, "temporal-restart.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		img := download(t, s, f, "shared")
		waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
		s.Temporal.Stop()
		s.Temporal.Start()

		done := waitStatus(t, s, img.ID, "READY", 2*time.Minute)
		checkReadyFile(t, done, f)
		if n := up.Requests(f.name); n != 1 {
			t.Errorf("the mirror answered %d requests: the node's transfer did not simply carry on", n)
		}
	})
}

// restartAgent restarts an agent and waits until the API sees it online
// again (it checks every node every few seconds).
func restartAgent(t *testing.T, s *testenv.Stack, a *testenv.Agent) {
	t.Helper()
	a.Restart()
	eventually(t, 30*time.Second, a.NodeID()+" online in the API", func() bool {
		var n struct{ Status string }
		// Not t.Context(): this also runs in a cleanup, when that is done.
		status, err := s.API.Do(context.Background(), http.MethodGet, "/v1/nodes/"+a.NodeID(), nil, &n)
		return err == nil && status == http.StatusOK && n.Status == "online"
	})
}

// agentKillFailsOver kills the agent doing a shared-pool download and
// checks that another node finishes it from the partial data.
func agentKillFailsOver(t *testing.T, s *testenv.Stack, up *testenv.Upstream, name string) {
	f := addImage(up, name, trickleSize)
	up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
	img := download(t, s, f, "shared")
	mid := waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
	victim := s.Agent(imageNode(mid))
	victim.Kill()
	t.Cleanup(func() { restartAgent(t, s, victim) })

	done := waitStatus(t, s, img.ID, "READY", 90*time.Second)
	checkReadyFile(t, done, f)
	if imageNode(done) == victim.NodeID() {
		t.Errorf("READY on %s, the node that was killed", victim.NodeID())
	}
	if served := up.BytesServed(f.name); served >= int64(len(f.data))*3/2 {
		t.Errorf("the mirror served %d bytes for a %d-byte file: the partial data was not resumed", served, len(f.data))
	}
	st := progressQuery(t, s, img.WorkflowID)
	if len(st.Failovers) == 0 || st.Failovers[0].NodeID != victim.NodeID() {
		t.Errorf("failovers = %+v, want one away from %s", st.Failovers, victim.NodeID())
	}
	checkNoData(t, s, "shared", "")
}
