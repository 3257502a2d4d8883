package workers_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

func TestDownloadIsReadyWithTheRightChecksum(t *testing.T) {
	srv := testenv.StartDevServer(t)
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			w := newWorld(t, srv, worldOptions{dbURL: db.URL, nodes: []string{"node-1", "node-2"}, size: 2 << 20})
			id := "happy-" + db.Name
			res := w.result(w.startDownload(id))
			w.checkReady(id, res)
			s := w.progress(workflows.WorkflowID(id))
			if s.Status != store.StatusReady || s.NodeID != res.NodeID || s.Progress.Percent != 100 || len(s.Failovers) != 0 {
				t.Fatalf("progress = %+v", s)
			}
			if served := w.up.BytesServed(imageFile); served != int64(len(w.data)) {
				t.Fatalf("upstream served %d bytes for a %d-byte file", served, len(w.data))
			}
			// No data in flight is left behind.
			entries, _ := os.ReadDir(filepath.Dir(res.Path))
			for _, e := range entries {
				if e.Name() != filepath.Base(res.Path) && !e.IsDir() {
					t.Errorf("left in the pool: %s", e.Name())
				}
			}
		})
	}
}

func TestKilledNodeFailsOverAndResumesOnSharedPool(t *testing.T) {
	srv := testenv.StartDevServer(t)
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			size := 4 << 20
			w := newWorld(t, srv, worldOptions{dbURL: db.URL, shared: true, nodes: []string{"node-1", "node-2"}, size: size, rate: 1 << 20})
			id := "failover-" + db.Name
			run := w.startDownload(id)
			first, _ := w.waitTransferring(id, 1<<20)
			w.agents[first].Kill()
			// The workflow records the failover when it happens, not only
			// at the end: the API reads it from the record while the
			// download goes on.
			live := w.waitRecord(id, func(img store.Image) bool { return len(img.Failovers) > 0 })
			if live.Terminal() || live.Failovers[0].NodeID != first {
				t.Fatalf("first record with a failover: %s, failovers %+v; want a live download that left %s", live.Status, live.Failovers, first)
			}

			res := w.result(run)
			w.checkReady(id, res)
			if res.NodeID == first {
				t.Fatalf("READY on %s, the node that was killed", first)
			}
			s := w.progress(workflows.WorkflowID(id))
			if len(s.Failovers) != 1 || s.Failovers[0].NodeID != first || s.Failovers[0].Reason == "" || s.Progress.Attempt != 2 {
				t.Fatalf("progress = %+v, want one failover from %s", s, first)
			}
			if served := w.up.BytesServed(imageFile); served >= int64(size)*3/2 {
				t.Fatalf("upstream served %d bytes for a %d-byte file: the partial file was not resumed", served, size)
			}
			img, _ := w.store.Image(context.Background(), id)
			if img.Attempt != 2 {
				t.Fatalf("image attempt = %d, want 2", img.Attempt)
			}
			recordHistory(t, srv, workflows.WorkflowID(id), "failover-shared.json")
		})
	}
}

func TestKilledNodeFailsOverAndStartsAfreshOnLocalPool(t *testing.T) {
	srv := testenv.StartDevServer(t)
	size := 3 << 20
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1", "node-2"}, size: size, rate: 1 << 20})
	id := "failover-local"
	run := w.startDownload(id)
	first, _ := w.waitTransferring(id, 512<<10)
	w.agents[first].Kill()

	res := w.result(run)
	w.checkReady(id, res)
	if res.NodeID == first {
		t.Fatalf("READY on %s, the node that was killed", first)
	}
	if s := w.progress(workflows.WorkflowID(id)); len(s.Failovers) != 1 || s.Failovers[0].NodeID != first {
		t.Fatalf("failovers = %+v", s.Failovers)
	}
	recordHistory(t, srv, workflows.WorkflowID(id), "failover-local.json")
}

// A local pool's only agent killed mid-download and started again after
// the node grace (a node reboot): the download fails over, finds no other
// node, and takes the same node back once it answers, which resumes its
// own partial data. It used to leave the node for good and fail with
// no_node_available (found by e2e's TestChaos).
func TestPoolsOnlyNodeBackAfterTheGraceResumesTheDownload(t *testing.T) {
	srv := testenv.StartDevServer(t)
	size := 3 << 20
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: size, rate: 1 << 20})
	id := "failover-comeback"
	run := w.startDownload(id)
	w.waitTransferring(id, 512<<10)
	w.agents["node-1"].Kill()
	// Past the grace: the download has left the node.
	w.waitRecord(id, func(img store.Image) bool { return len(img.Failovers) > 0 })
	w.agents["node-1"].Restart()

	res := w.result(run)
	w.checkReady(id, res)
	if res.NodeID != "node-1" {
		t.Fatalf("READY on %s, want node-1", res.NodeID)
	}
	s := w.progress(workflows.WorkflowID(id))
	if len(s.Failovers) != 1 || s.Failovers[0].NodeID != "node-1" || s.Failovers[0].Code != "node_unreachable" {
		t.Fatalf("failovers = %+v, want one of node-1, unreachable", s.Failovers)
	}
	// Resumed, not started again: the bytes before the kill were kept.
	if served := w.up.BytesServed(imageFile); served >= int64(size)*3/2 {
		t.Errorf("the mirror served %d bytes for a %d-byte file: the partial data was not resumed", served, size)
	}
	recordHistory(t, srv, workflows.WorkflowID(id), "failover-comeback.json")
}

func TestWorkerRestartReattachesWithoutRestartingTheTransfer(t *testing.T) {
	srv := testenv.StartDevServer(t)
	size := 3 << 20
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: size, rate: 1 << 20})
	id := "restart"
	run := w.startDownload(id)
	node, before := w.waitTransferring(id, 512<<10)

	w.w.Stop()
	w.startWorker()

	res := w.result(run)
	w.checkReady(id, res)
	after, err := w.agents[node].Client().Download(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if before.StartedAt == nil || after.StartedAt == nil || !before.StartedAt.Equal(*after.StartedAt) {
		t.Fatalf("node job started at %v, then %v: the transfer was started again", before.StartedAt, after.StartedAt)
	}
	if n := w.up.Requests(imageFile); n != 1 {
		t.Fatalf("upstream answered %d requests for the file, want the one transfer", n)
	}
	if served := w.up.BytesServed(imageFile); served != int64(size) {
		t.Fatalf("upstream served %d bytes for a %d-byte file", served, size)
	}
	if s := w.progress(workflows.WorkflowID(id)); len(s.Failovers) != 0 || s.Progress.Attempt != 1 {
		t.Fatalf("progress = %+v, want no failover", s)
	}
}

func TestCancelStopsTheNodeJobAndRemovesPartialData(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 4 << 20, rate: 512 << 10})
	id := "cancel"
	run := w.startDownload(id)
	node, _ := w.waitTransferring(id, 256<<10)
	if err := w.c.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow ended with %v, want cancelled", err)
	}
	desc, err := w.c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Fatalf("workflow status %s, want CANCELED", st)
	}
	img, _ := w.store.Image(context.Background(), id)
	if img.Status != store.StatusCancelled {
		t.Fatalf("image status %s, want CANCELLED", img.Status)
	}
	// Nothing of the image is left in the pool, in flight or published.
	var left []string
	root := w.agents[node].PoolDir(poolID)
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		// The agent may keep the cancelled job's record; data may not stay.
		if err == nil && !d.IsDir() && filepath.Ext(p) != ".json" {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Fatalf("left in the pool after cancel: %v", left)
	}
	// The clean-up on the node ran only once the watch had stopped: its
	// cancellation is in the history before the clean-up is scheduled.
	if canceled, cleanup := watchCanceledAndCleanup(t, w, run.GetID()); canceled < 0 || cleanup < 0 || canceled > cleanup {
		t.Fatalf("watch cancelled at event %d, clean-up on the node scheduled at event %d: want the watch stopped first", canceled, cleanup)
	}
	recordHistory(t, srv, run.GetID(), "cancelled-after-watch-stopped.json")
}

// watchCanceledAndCleanup returns the ids of the event that records the
// watch's cancellation and of the one that schedules CancelOnNode, -1 for
// one not in the workflow's history.
func watchCanceledAndCleanup(t *testing.T, w *world, wfID string) (canceled, cleanup int64) {
	t.Helper()
	canceled, cleanup = -1, -1
	watches := map[int64]bool{}
	it := w.c.GetWorkflowHistory(context.Background(), wfID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch e.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			switch e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() {
			case "WatchDownload":
				watches[e.GetEventId()] = true
			case "CancelOnNode":
				if cleanup < 0 {
					cleanup = e.GetEventId()
				}
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			if watches[e.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()] {
				canceled = e.GetEventId()
			}
		}
	}
	return canceled, cleanup
}

func TestNoNodeAvailableSaysWhatToDo(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 1 << 20})
	w.agents["node-1"].Stop()
	id := "nonode"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := w.startDownload(id).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "no_node_available" {
		t.Fatalf("workflow ended with %v, want no_node_available", err)
	}
	img, _ := w.store.Image(context.Background(), id)
	if img.Status != store.StatusFailed || img.ErrorCode != "no_node_available" {
		t.Fatalf("image = %s %s: %s", img.Status, img.ErrorCode, img.ErrorMessage)
	}
	for _, want := range []string{"node-1", "health check", "Start or fix"} {
		if !contains(img.ErrorMessage, want) {
			t.Errorf("message %q does not say %q", img.ErrorMessage, want)
		}
	}
	recordHistory(t, srv, workflows.WorkflowID(id), "no-node.json")
}

func TestImageErrorsFailAtOnceWithTheirCode(t *testing.T) {
	srv := testenv.StartDevServer(t)
	cases := []struct {
		name  string
		fault testenv.Fault
		code  string
	}{
		{"wrong bytes", testenv.Fault{WrongBytes: true}, "checksum_mismatch"},
		{"missing on the mirror", testenv.Fault{Status: []int{404, 404, 404, 404, 404, 404, 404, 404}}, "upstream_not_found"},
		{"an HTML page", testenv.Fault{HTML: true}, "not_a_disk_image"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1", "node-2"}, size: 1 << 20})
			w.up.SetFault(imageFile, c.fault)
			id := "bad-" + strconv.Itoa(i)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := w.startDownload(id).Get(ctx, nil)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != c.code {
				t.Fatalf("workflow ended with %v, want %s", err, c.code)
			}
			img, _ := w.store.Image(context.Background(), id)
			if img.Status != store.StatusFailed || img.ErrorCode != c.code || img.ErrorMessage == "" {
				t.Fatalf("image = %s %s: %s", img.Status, img.ErrorCode, img.ErrorMessage)
			}
			// Not the node's fault: no other node was tried.
			if s := w.progress(workflows.WorkflowID(id)); len(s.Failovers) != 0 || s.Status != store.StatusFailed {
				t.Fatalf("progress = %+v", s)
			}
		})
	}
}
