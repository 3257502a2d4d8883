package api_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
	"github.com/quantix/cloudimages/workflows/contract"
)

// agent is a real node agent, in-process, serving the given pools.
type agent struct {
	nodeID string
	http   *httptest.Server
	dirs   map[string]string // pool id → directory
}

func startAgent(t *testing.T, nodeID string, dirs map[string]string) *agent {
	t.Helper()
	return startAgentWithToken(t, nodeID, "node-secret", dirs)
}

func startAgentWithToken(t *testing.T, nodeID, token string, dirs map[string]string) *agent {
	t.Helper()
	var pools []nodeagent.PoolDir
	for id, dir := range dirs {
		pools = append(pools, nodeagent.PoolDir{ID: id, Dir: dir})
	}
	srv, err := nodeagent.New(nodeagent.Config{NodeID: nodeID, Token: nodeauth.Credential(token, nodeID), Pools: pools})
	if err != nil {
		t.Fatalf("node agent: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return &agent{nodeID: nodeID, http: ts, dirs: dirs}
}

func (a *agent) address() string { return strings.TrimPrefix(a.http.URL, "http://") }

// publish puts a finished image file into a pool, as a download would.
func (a *agent) publish(t *testing.T, poolID, name string) string {
	t.Helper()
	p := filepath.Join(a.dirs[poolID], agentclient.ImagesDir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("QFI\xfb image"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readyImage records a READY image of file name in the pool, on node.
func (e *env) readyImage(t *testing.T, id, poolID, nodeID, name, path string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: id, Name: name, SourceKey: "https://x/" + id, PoolID: poolID, FileName: name}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Transition(ctx, id, store.ToReady{NodeID: nodeID, Path: path, SizeBytes: 10}); err != nil {
		t.Fatal(err)
	}
}

func deadAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// TestDeleteReadyImageRemovesItsFileThroughAnAgent deletes READY images
// with the real worker: the API starts RemoveImageFileWorkflow, whose
// activity asks an agent to remove the file and then deletes the record,
// and DELETE answers with the outcome. It has a dev server of its own, so
// its worker does not pick up the other tests' workflows.
func TestDeleteReadyImageRemovesItsFileThroughAnAgent(t *testing.T) {
	dev := testenv.StartDevServer(t)
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, withTemporal(dev.Client()))
		e.startWorker(t, dev, "node-secret", 0)
		shared := t.TempDir()
		// Two nodes of a shared pool see one directory; the image's own
		// node is down, so the other one removes the file.
		up := startAgent(t, "up", map[string]string{"nfs": shared, "local": t.TempDir()})
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "down", "address": deadAddress(t)}, nil)
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "up", "address": up.address()}, nil)
		e.must(201, "POST", "/v1/pools", map[string]any{"id": "nfs", "type": "nfs", "node_ids": []string{"down", "up"}}, nil)
		e.must(201, "POST", "/v1/pools", map[string]any{"id": "local", "type": "local", "node_ids": []string{"down", "up"}}, nil)

		f := up.publish(t, "nfs", "a.qcow2")
		e.readyImage(t, "a", "nfs", "down", "a.qcow2", f)
		e.must(http.StatusNoContent, "DELETE", "/v1/images/a", nil, nil)
		if exists(f) {
			t.Errorf("the file of the deleted image is still there")
		}
		e.must(404, "GET", "/v1/images/a", nil, nil)
		var res contract.RemoveFileResult
		if err := dev.Client().GetWorkflow(context.Background(), contract.RemoveFileWorkflowID("a"), "").Get(context.Background(), &res); err != nil ||
			!res.FileRemoved || res.NodeID != "up" {
			t.Errorf("the removal workflow of image a: %+v, %v; want the file removed by node up", res, err)
		}

		// On a local pool only the image's own node has the file: with it
		// down the image is kept, and nothing else is touched.
		g := up.publish(t, "local", "b.qcow2")
		e.readyImage(t, "b", "local", "down", "b.qcow2", "/elsewhere/b.qcow2")
		r := e.do("DELETE", "/v1/images/b", nil)
		if r.status != 503 || r.errCode(t) != "node_unreachable" || !strings.Contains(string(r.body), "down") {
			t.Fatalf("DELETE with the image's node down: %d %s", r.status, r.body)
		}
		e.must(200, "GET", "/v1/images/b", nil, nil)
		if !exists(g) {
			t.Errorf("another node's file of the same name was removed")
		}
		// force drops the record and leaves the file.
		e.must(http.StatusNoContent, "DELETE", "/v1/images/b?force=true", nil, nil)
		e.must(404, "GET", "/v1/images/b", nil, nil)

		// On its own node, a local pool's file is removed.
		h := up.publish(t, "local", "c.qcow2")
		e.readyImage(t, "c", "local", "up", "c.qcow2", h)
		e.must(http.StatusNoContent, "DELETE", "/v1/images/c", nil, nil)
		if exists(h) {
			t.Errorf("the local file is still there")
		}

		// An agent that refuses the worker's node token: the image is kept.
		other := startAgentWithToken(t, "other", "another-token", map[string]string{"other": t.TempDir()})
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "other", "address": other.address()}, nil)
		e.must(201, "POST", "/v1/pools", map[string]any{"id": "other", "type": "local", "node_ids": []string{"other"}}, nil)
		i := other.publish(t, "other", "d.qcow2")
		e.readyImage(t, "d", "other", "other", "d.qcow2", i)
		if r := e.do("DELETE", "/v1/images/d", nil); r.status != 503 || r.errCode(t) != "node_unreachable" {
			t.Errorf("DELETE with a wrong node token: %d %s", r.status, r.body)
		}
		if !exists(i) {
			t.Errorf("file removed with a wrong token")
		}
		e.must(200, "GET", "/v1/images/d", nil, nil)
	})
}

// TestDeleteReadyImageWithoutAWorkerAnswersInBoundedTime: with no worker
// to run the removal, DELETE gives up after RemoveTimeout with a message
// that says so, and the image is kept until a worker removes it.
func TestDeleteReadyImageWithoutAWorkerAnswersInBoundedTime(t *testing.T) {
	dev := testenv.StartDevServer(t)
	e := newEnv(t, testenv.SQLite(t), withTemporal(dev.Client()), withOptions(func(o *api.Options) { o.RemoveTimeout = time.Second }))
	a := startAgent(t, "n1", map[string]string{"p1": t.TempDir()})
	e.must(201, "POST", "/v1/nodes", map[string]any{"id": "n1", "address": a.address()}, nil)
	e.must(201, "POST", "/v1/pools", map[string]any{"id": "p1", "type": "local", "node_ids": []string{"n1"}}, nil)
	f := a.publish(t, "p1", "a.qcow2")
	e.readyImage(t, "a", "p1", "n1", "a.qcow2", f)
	start := time.Now()
	r := e.do("DELETE", "/v1/images/a", nil)
	if r.status != 503 || r.errCode(t) != "node_unreachable" || !strings.Contains(string(r.body), "worker") {
		t.Fatalf("DELETE without a worker: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("DELETE took %s, want about the 1s RemoveTimeout", took)
	}
	if !exists(f) {
		t.Fatal("the file went without a worker")
	}
	// A worker that comes later finishes the removal.
	e.startWorker(t, dev, "node-secret", 0)
	eventually(t, 30*time.Second, "the image gone once a worker runs", func() bool {
		return e.do("GET", "/v1/images/a", nil).status == 404
	})
	if exists(f) {
		t.Errorf("the file is still there after the removal")
	}
}

func TestDeleteTerminalImagesRemovesTheRecord(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	ctx := context.Background()
	for _, st := range []store.Transition{store.ToFailed{Code: "internal"}, store.ToCancelled{}} {
		id := strings.ToLower(st.Status())
		if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: id, SourceKey: id, PoolID: pool, FileName: id}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Transition(ctx, id, st); err != nil {
			t.Fatal(err)
		}
		e.must(http.StatusNoContent, "DELETE", "/v1/images/"+id, nil, nil)
		e.must(404, "GET", "/v1/images/"+id, nil, nil)
	}
}

func TestDeleteLiveImageCancelsItsWorkflow(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		ctx := context.Background()
		pool, _ := e.seed("nfs", "127.0.0.1:1")
		var img image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}, &img)

		var got image
		e.must(http.StatusAccepted, "DELETE", "/v1/images/"+img.ID, nil, &got)
		if got.ID != img.ID {
			t.Errorf("DELETE answered %+v", got)
		}
		if !cancelRequested(t, img.ID) {
			t.Fatal("the workflow has no cancel request")
		}
		// The workflow marks the image CANCELLED when it handles the
		// request (no worker runs here). Were it to end without doing so,
		// as when an operator terminates it, a second DELETE sees that
		// nothing runs and marks it CANCELLED itself.
		e.must(http.StatusOK, "GET", "/v1/images/"+img.ID, nil, &got)
		if got.Status != store.StatusPending {
			t.Errorf("status %s before the workflow handled the cancel", got.Status)
		}
		if err := temporalC.TerminateWorkflow(ctx, workflows.WorkflowID(img.ID), "", "test"); err != nil {
			t.Fatal(err)
		}
		e.must(http.StatusAccepted, "DELETE", "/v1/images/"+img.ID, nil, &got)
		if got.Status != store.StatusCancelled || got.Error == nil || got.Error.Code != "cancelled" {
			t.Errorf("after the workflow ended: %+v", got)
		}
		e.must(http.StatusNoContent, "DELETE", "/v1/images/"+img.ID, nil, nil)

		// A live image whose workflow was never started is CANCELLED at once.
		if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: "orphan-" + randSuffix(), SourceKey: "o", PoolID: pool, FileName: "o"}); err != nil {
			t.Fatal(err)
		}
		imgs, _ := e.store.Images(ctx, store.ImageFilter{PoolID: pool, Live: true})
		if len(imgs) != 1 {
			t.Fatalf("live images: %d", len(imgs))
		}
		e.must(http.StatusAccepted, "DELETE", "/v1/images/"+imgs[0].ID, nil, &got)
		if got.Status != store.StatusCancelled {
			t.Errorf("orphan after DELETE: %s", got.Status)
		}
	})
}

// cancelRequested reports whether the image's workflow got a cancel request.
func cancelRequested(t *testing.T, imageID string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := temporalC.GetWorkflowHistory(ctx, workflows.WorkflowID(imageID), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == enums.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED {
			return true
		}
	}
	return false
}

// TestNodeHealthIsCheckedInTheBackground: the worker's NodeHealthWorkflow
// checks the agents and the API shows what it recorded.
func TestNodeHealthIsCheckedInTheBackground(t *testing.T) {
	dev := testenv.StartDevServer(t)
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, withTemporal(dev.Client()))
		e.startWorker(t, dev, "node-secret", 100*time.Millisecond)
		a := startAgent(t, "n1", map[string]string{"p1": t.TempDir()})
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "n1", "address": a.address()}, nil)
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "imposter", "address": a.address()}, nil)
		e.must(201, "POST", "/v1/pools", map[string]any{"id": "p1", "type": "local", "node_ids": []string{"n1"}}, nil)
		node := func(id string) map[string]any {
			var n map[string]any
			e.must(200, "GET", "/v1/nodes/"+id, nil, &n)
			return n
		}
		eventually(t, 10*time.Second, "n1 online", func() bool { return node("n1")["status"] == "online" })
		n := node("n1")
		if pools, _ := n["pools"].([]any); len(pools) != 1 || pools[0] != "p1" || n["last_seen_at"] == nil {
			t.Errorf("online node: %v", n)
		}
		var pool map[string]any
		e.must(200, "GET", "/v1/pools/p1", nil, &pool)
		if free, _ := pool["free_bytes"].(float64); free <= 0 || pool["total_bytes"].(float64) < free {
			t.Errorf("pool served by an online node: free_bytes %v, total_bytes %v; want 0 < free <= total", pool["free_bytes"], pool["total_bytes"])
		}
		// An agent that answers as another node is not that node.
		eventually(t, 10*time.Second, "imposter offline", func() bool { return node("imposter")["status"] == "offline" })

		a.http.Close()
		eventually(t, 10*time.Second, "n1 offline once its agent stops", func() bool { return node("n1")["status"] == "offline" })
		if n := node("n1"); n["last_seen_at"] == nil {
			t.Errorf("an offline node forgot when it was last seen: %v", n)
		}
		// With every node of the pool offline, a new download is still
		// accepted (the status may be a round old: an agent just restarted
		// answers already), and the image says it waits for a node of the
		// pool, until when, and why n1 is refused.
		var img struct {
			ID       string
			Status   string
			Progress struct {
				WaitingUntil *time.Time `json:"waiting_until"`
				Message      string
			}
		}
		e.must(202, "POST", "/v1/images", map[string]any{"url": "https://a.example/wait.qcow2", "checksum": sha, "pool_id": "p1"}, &img)
		eventually(t, 20*time.Second, "the image waiting for a node", func() bool {
			e.must(200, "GET", "/v1/images/"+img.ID, nil, &img)
			return img.Progress.WaitingUntil != nil
		})
		if img.Status != "PENDING" || !strings.HasPrefix(img.Progress.Message, `waiting for a node of pool "p1" until `) ||
			!strings.Contains(img.Progress.Message, "n1: health check of") {
			t.Errorf("image waiting for the pool's only node: %+v", img)
		}
	})
}

// TestNodeRegisteredShowsItsStatusWithoutWaitingForTheNextRound: POST
// /v1/nodes asks the health workflow for a round at once, so a node shows
// online long before the next one is due.
func TestNodeRegisteredShowsItsStatusWithoutWaitingForTheNextRound(t *testing.T) {
	dev := testenv.StartDevServer(t)
	e := newEnv(t, testenv.SQLite(t), withTemporal(dev.Client()))
	e.startWorker(t, dev, "node-secret", time.Hour)
	// The first round (of no nodes) is over before the node comes.
	eventually(t, 20*time.Second, "the first round of checks", func() bool {
		it := dev.Client().GetWorkflowHistory(context.Background(), contract.NodeHealthWorkflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return false
			}
			if ev.GetEventType() == enums.EVENT_TYPE_TIMER_STARTED {
				return true
			}
		}
		return false
	})
	a := startAgent(t, "n1", map[string]string{"p1": t.TempDir()})
	e.must(201, "POST", "/v1/nodes", map[string]any{"id": "n1", "address": a.address()}, nil)
	eventually(t, 20*time.Second, "n1 online within the hour's round", func() bool {
		var n map[string]any
		e.must(200, "GET", "/v1/nodes/n1", nil, &n)
		return n["status"] == "online"
	})
}

// startHTTP serves h on a local port until the test ends and returns its host:port.
func startHTTP(t *testing.T, h http.Handler) string {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}
