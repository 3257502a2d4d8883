package workers_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workers"
	"github.com/quantix/cloudimages/workflows"
)

// TestTwoWorkersCheckNodeHealthOnce runs two real workers (workers.Run)
// against one Temporal and one database: the agent is asked for its
// health at the pace of one checker, not two, one NodeHealthWorkflow
// runs, and the checks go on when the worker that started it stops.
func TestTwoWorkersCheckNodeHealthOnce(t *testing.T) {
	srv := testenv.StartDevServer(t)
	dbURL := testenv.SQLite(t)
	ctx := context.Background()
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	agent, err := nodeagent.New(nodeagent.Config{NodeID: "n1", Token: nodeauth.Credential(nodeToken, "n1"), Pools: []nodeagent.PoolDir{{ID: poolID, Dir: t.TempDir()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Close)
	var checks atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			checks.Add(1)
		}
		agent.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	if err := st.CreateNode(ctx, &store.Node{ID: "n1", Name: "n1", Address: strings.TrimPrefix(ts.URL, "http://")}); err != nil {
		t.Fatal(err)
	}

	const interval = 500 * time.Millisecond
	run := func() (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- workers.Run(rctx, workers.Config{TemporalAddress: srv.Address, TemporalNamespace: "default",
				DatabaseURL: dbURL, NodeToken: nodeToken, NodeHealthInterval: interval, NodeHealthKeepInterval: 200 * time.Millisecond})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	}
	stopFirst := run()
	stopSecond := run()
	t.Cleanup(stopSecond)

	waitFor(t, "the node online", func() bool {
		n, err := st.Node(ctx, "n1")
		return err == nil && n.Status == store.NodeOnline
	})
	// Each worker signals the workflow when it starts it or finds it
	// running: with two signals in its history, both have; then count the
	// checks over a window.
	waitFor(t, "both workers at the node health workflow", func() bool {
		return signals(t, srv.Client()) >= 2
	})
	// Every round of the one workflow records a marker (its local
	// activity); the agent must see as many health requests as there were
	// rounds, give or take the one in flight at each end of the window. A
	// second checker of any kind would add its own requests.
	const window = 5 * time.Second
	checksBefore, roundsBefore := checks.Load(), rounds(t, srv.Client())
	time.Sleep(window) // the measurement itself: requests and rounds over a window
	got, want := checks.Load()-checksBefore, int64(rounds(t, srv.Client())-roundsBefore)
	t.Logf("%d health requests, %d rounds in %s", got, want, window)
	if want < 2 || got < want-2 || got > want+2 {
		t.Errorf("the agent had %d health requests in %s while the node health workflow ran %d rounds: want as many (one checker)", got, window, want)
	}
	resp, err := srv.Client().ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default",
		Query: "WorkflowType = '" + workflows.NodeHealthWorkflowType + "' AND ExecutionStatus = 'Running'"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetExecutions()); n != 1 {
		t.Errorf("%d node health workflows run, want 1", n)
	}

	// The first worker goes; the second carries the checks on.
	stopFirst()
	after := checks.Load()
	waitFor(t, "checks after the first worker stopped", func() bool { return checks.Load() >= after+3 })

	recordHistory(t, srv, workflows.NodeHealthWorkflowID, "node-health.json")

	// Terminated by an operator, the workflow is started again by the
	// worker that runs, and the checks go on.
	if err := srv.Client().TerminateWorkflow(ctx, workflows.NodeHealthWorkflowID, "", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node health workflow running again", func() bool {
		d, err := srv.Client().DescribeWorkflowExecution(ctx, workflows.NodeHealthWorkflowID, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING
	})
	after = checks.Load()
	waitFor(t, "checks after the workflow was terminated", func() bool { return checks.Load() >= after+3 })
}

// rounds counts the rounds of checks in the history of the node health
// workflow's current run: each is a local activity's marker.
func rounds(t *testing.T, c client.Client) int {
	t.Helper()
	return countEvents(t, c, enums.EVENT_TYPE_MARKER_RECORDED)
}

// signals counts the signals in the history of the node health
// workflow's current run.
func signals(t *testing.T, c client.Client) int {
	t.Helper()
	return countEvents(t, c, enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
}

func countEvents(t *testing.T, c client.Client, typ enums.EventType) int {
	t.Helper()
	n := 0
	it := c.GetWorkflowHistory(context.Background(), workflows.NodeHealthWorkflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return 0 // not started yet
		}
		if ev.GetEventType() == typ {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRemoveImageFileWithTheRealWorker downloads an image to READY, then
// removes it with RemoveImageFileWorkflow as the API does: the file goes
// from the pool, then the record.
func TestRemoveImageFileWithTheRealWorker(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 1 << 20})
	id := "remove-demo"
	img := w.checkReady(id, w.result(w.startDownload(id)))

	ctx := context.Background()
	run, err := w.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RemoveFileWorkflowID(id), TaskQueue: workflows.TaskQueue},
		workflows.RemoveFileWorkflowType, workflows.RemoveFileInput{ImageID: id})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.RemoveFileResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if !res.FileRemoved || res.NodeID != "node-1" {
		t.Errorf("result = %+v", res)
	}
	if _, err := os.Stat(img.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the file at %s: %v, want it gone", img.Path, err)
	}
	if _, err := w.store.Image(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the image record: %v, want it gone", err)
	}
	recordHistory(t, srv, workflows.RemoveFileWorkflowID(id), "remove-file.json")
}
