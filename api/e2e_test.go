package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workers"
)

// TestDownloadCancelAndDeleteWithTheRealWorker runs the API with the real
// worker and a real node agent: a download reaches READY with its progress
// streamed, a slow one is cancelled through its workflow, and the READY
// image's file is removed with it. It has a dev server of its own, so its
// worker does not pick up the other tests' workflows.
func TestDownloadCancelAndDeleteWithTheRealWorker(t *testing.T) {
	dev := testenv.StartDevServer(t)
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(2<<20, 7)
	fast := up.AddFile("fast.qcow2", data)
	slow := up.AddFile("slow.qcow2", data)
	up.SetFault("slow.qcow2", testenv.Fault{BytesPerSecond: 256 << 10})

	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, withTemporal(dev.Client()), withOptions(func(o *api.Options) {
			o.TemporalAddress = dev.Address
		}))
		dir := t.TempDir()
		srv, err := nodeagent.New(nodeagent.Config{NodeID: "n1", Token: nodeauth.Credential("node-secret", "n1"), AllowPrivateNetworks: true,
			Pools: []nodeagent.PoolDir{{ID: "p1", Dir: dir}}})
		if err != nil {
			t.Fatal(err)
		}
		agentHTTP := startHTTP(t, srv.Handler())
		t.Cleanup(srv.Close)
		e.startWorker(t, dev, "node-secret", 200*time.Millisecond)

		e.must(201, "POST", "/v1/nodes", map[string]any{"id": "n1", "address": agentHTTP}, nil)
		e.must(201, "POST", "/v1/pools", map[string]any{"id": "p1", "type": "local", "node_ids": []string{"n1"}}, nil)
		eventually(t, 10*time.Second, "n1 online", func() bool {
			var n map[string]any
			e.must(200, "GET", "/v1/nodes/n1", nil, &n)
			return n["status"] == "online"
		})

		// A download to READY, followed on its events stream.
		var img image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": fast, "checksum": up.SHA256("fast.qcow2"), "pool_id": "p1"}, &img)
		s := e.follow(t, img.ID)
		ready := s.next(t, "READY", func(i image) bool { return i.Status == store.StatusReady })
		want := filepath.Join(dir, agentclient.ImagesDir, "fast.qcow2")
		if ready.Path != want || ready.NodeID != "n1" || ready.SizeBytes != int64(len(data)) || ready.Checksum != up.SHA256("fast.qcow2") {
			t.Errorf("READY image: %+v", ready)
		}
		if got, err := os.ReadFile(want); err != nil || len(got) != len(data) {
			t.Fatalf("the image file: %d bytes, %v", len(got), err)
		}
		<-s.done

		// A slow download, cancelled while it runs.
		var live image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": slow, "checksum": up.SHA256("slow.qcow2"), "pool_id": "p1"}, &live)
		s = e.follow(t, live.ID)
		moving := s.next(t, "progress", func(i image) bool {
			return i.Status == store.StatusDownloading && i.Progress.BytesDone > 0 && i.Progress.BytesTotal > 0
		})
		if moving.Progress.BytesTotal != int64(len(data)) || moving.Progress.NodeID != "n1" {
			t.Errorf("progress: %+v", moving.Progress)
		}
		e.must(http.StatusAccepted, "DELETE", "/v1/images/"+live.ID, nil, nil)
		cancelled := s.next(t, "CANCELLED", func(i image) bool { return i.Status == store.StatusCancelled })
		if cancelled.Error == nil || cancelled.Error.Code != "cancelled" {
			t.Errorf("cancelled image: %+v", cancelled)
		}
		<-s.done
		if _, err := os.Stat(filepath.Join(dir, agentclient.ImagesDir, "slow.qcow2")); err == nil {
			t.Errorf("a cancelled download left a file at the image's path")
		}
		e.must(http.StatusNoContent, "DELETE", "/v1/images/"+live.ID, nil, nil)

		// Deleting the READY image removes its file from the pool.
		e.must(http.StatusNoContent, "DELETE", "/v1/images/"+img.ID, nil, nil)
		if _, err := os.Stat(want); err == nil {
			t.Errorf("the deleted image's file is still there")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if imgs, _ := e.store.Images(ctx, store.ImageFilter{}); len(imgs) != 0 {
			t.Errorf("images left: %d", len(imgs))
		}
	})
}

// TestFailoversShowOnTheImageWhileItDownloads stops the node a download
// runs on: the worker fails over to the pool's other node, and the image
// shows the failover while it still downloads (the workflow records it in
// the image record when it happens; the API asks no workflow), and keeps
// it once READY.
func TestFailoversShowOnTheImageWhileItDownloads(t *testing.T) {
	dev := testenv.StartDevServer(t)
	up := testenv.NewUpstream(t)
	slow := up.AddFile("slow.qcow2", testenv.QCOW2Image(2<<20, 9))
	up.SetFault("slow.qcow2", testenv.Fault{BytesPerSecond: 256 << 10})
	e := newEnv(t, testenv.SQLite(t), withTemporal(dev.Client()))
	stop := map[string]func(){}
	for _, id := range []string{"n1", "n2"} {
		srv, err := nodeagent.New(nodeagent.Config{NodeID: id, Token: nodeauth.Credential("node-secret", id), AllowPrivateNetworks: true,
			Pools: []nodeagent.PoolDir{{ID: "p1", Dir: t.TempDir()}}})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		stop[id] = func() {
			ts.CloseClientConnections()
			ts.Close()
			srv.Close()
		}
		t.Cleanup(stop[id])
		e.must(201, "POST", "/v1/nodes", map[string]any{"id": id, "address": strings.TrimPrefix(ts.URL, "http://")}, nil)
	}
	e.must(201, "POST", "/v1/pools", map[string]any{"id": "p1", "type": "local", "node_ids": []string{"n1", "n2"}}, nil)
	e.startWorker(t, dev, "node-secret", 200*time.Millisecond)

	var img image
	e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": slow, "checksum": up.SHA256("slow.qcow2"), "pool_id": "p1"}, &img)
	s := e.follow(t, img.ID)
	first := s.next(t, "progress", func(i image) bool { return i.Status == store.StatusDownloading && i.Progress.BytesDone > 0 })
	gone := first.Progress.NodeID
	stop[gone]()

	var got struct {
		image
		Failovers []struct {
			NodeID string    `json:"node_id"`
			Reason string    `json:"reason"`
			At     time.Time `json:"at"`
		} `json:"failovers"`
	}
	eventually(t, 30*time.Second, "the image shows its failover", func() bool {
		e.must(http.StatusOK, "GET", "/v1/images/"+img.ID, nil, &got)
		return len(got.Failovers) > 0 && got.Progress.Attempt >= 2
	})
	if got.Status != store.StatusDownloading && got.Status != store.StatusPending {
		t.Errorf("status %s when the failover first showed; want it shown while the download goes on", got.Status)
	}
	if got.Failovers[0].NodeID != gone || got.Failovers[0].Reason == "" || got.Failovers[0].At.IsZero() {
		t.Errorf("failover: %+v", got.Failovers[0])
	}
	// Once READY, with the workflow ended, the image still tells its story.
	s.next(t, "READY", func(i image) bool { return i.Status == store.StatusReady })
	e.must(http.StatusOK, "GET", "/v1/images/"+img.ID, nil, &got)
	if len(got.Failovers) != 1 || got.Failovers[0].NodeID != gone {
		t.Errorf("READY image's failovers: %+v, want the one from %s", got.Failovers, gone)
	}
}

// startWorker runs the real worker in-process against dev and the env's
// store, with short timings; a positive healthInterval also starts the
// node health workflow, as `cloudimages worker` does. Give a test that
// starts a worker a dev server of its own, so that its worker does not
// pick up the other tests' workflows.
func (e *env) startWorker(t *testing.T, dev *testenv.DevServer, nodeToken string, healthInterval time.Duration) {
	t.Helper()
	cat, _ := catalog.Load("")
	w := workers.New(dev.Client(), workers.Deps{Store: e.store, Catalog: cat, NodeToken: nodeToken,
		Settings: activities.Settings{NoNodeTimeout: 30 * time.Second, NodeGrace: time.Second, HeartbeatTimeout: 5 * time.Second,
			PollInterval: 100 * time.Millisecond, ProgressInterval: 300 * time.Millisecond, SignalInterval: time.Second}})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if healthInterval > 0 {
		if err := workers.StartNodeHealth(context.Background(), dev.Client(), healthInterval); err != nil {
			t.Fatal(err)
		}
	}
}
