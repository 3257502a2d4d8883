package workers_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workers"
	"github.com/quantix/cloudimages/workflows"
)

const (
	nodeToken = "node-token-0123456789"
	poolID    = "pool-1"
	imageFile = "tiny.qcow2"
	entryID   = "tiny"
)

// world is everything real that a download runs against: a Temporal dev
// server, a database, an upstream mirror, node agents as processes, and
// an in-process worker built with workers.New.
type world struct {
	t       *testing.T
	srv     *testenv.DevServer
	c       client.Client
	store   *store.Store
	up      *testenv.Upstream
	agents  map[string]*testenv.Agent
	cat     *catalog.Catalog
	catPath string
	data    []byte
	w       worker.Worker
	creds   *credentials.Set
}

type worldOptions struct {
	dbURL  string
	shared bool
	nodes  []string
	size   int
	rate   int64 // upstream bytes per second; 0 is full speed
	// windows are the pool's transfer windows, in UTC.
	windows []string
	// entry, when set, changes the catalog entry before it is written
	// (mirrors); creds are the worker's source credentials.
	entry func(*catalog.Entry)
	creds *credentials.Set
}

func newWorld(t *testing.T, srv *testenv.DevServer, o worldOptions) *world {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, o.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &world{t: t, srv: srv, c: srv.Client(), store: st, up: testenv.NewUpstream(t), agents: map[string]*testenv.Agent{}}

	w.data = testenv.QCOW2Image(o.size, time.Now().UnixNano())
	w.up.AddFile(imageFile, w.data)
	if o.rate > 0 {
		w.up.SetFault(imageFile, testenv.Fault{BytesPerSecond: o.rate})
	}
	entries := []catalog.Entry{{ID: entryID, Name: "Tiny test image", OS: "test", Format: "qcow2", URL: w.up.FileURL(imageFile),
		ChecksumURL: w.up.AddChecksumFile("SHA256SUMS", testenv.SHA256SUMS, imageFile), SizeBytes: int64(o.size)}}
	if o.entry != nil {
		o.entry(&entries[0])
	}
	w.creds = o.creds
	w.catPath = filepath.Join(t.TempDir(), "catalog.json")
	b, _ := json.Marshal(entries)
	if err := os.WriteFile(w.catPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if w.cat, err = catalog.Load(w.catPath); err != nil {
		t.Fatal(err)
	}

	sharedDir := t.TempDir()
	for _, id := range o.nodes {
		dir := t.TempDir()
		if o.shared {
			dir = sharedDir
		}
		a := testenv.StartAgent(t, testenv.AgentOptions{NodeID: id, Token: nodeauth.Credential(nodeToken, id), AllowPrivateNetworks: true,
			Pools: []nodeagent.PoolDir{{ID: poolID, Dir: dir}}})
		w.agents[id] = a
		if err := st.CreateNode(ctx, &store.Node{ID: id, Name: id, Address: a.Address()}); err != nil {
			t.Fatal(err)
		}
	}
	typ := "local"
	if o.shared {
		typ = "nfs"
	}
	pool := &store.Pool{ID: poolID, Name: poolID, Type: typ, Shared: o.shared, TransferWindows: o.windows, TimeZone: "UTC"}
	if err := st.CreatePool(ctx, pool, o.nodes); err != nil {
		t.Fatal(err)
	}
	w.startWorker()
	return w
}

// startWorker starts an in-process worker with short timings.
func (w *world) startWorker() {
	w.t.Helper()
	w.w = workers.New(w.c, workers.Deps{Store: w.store, Catalog: w.cat, NodeToken: nodeToken, Credentials: w.creds,
		Settings: activities.Settings{NoNodeTimeout: 5 * time.Second, NodeGrace: 3 * time.Second, HeartbeatTimeout: 5 * time.Second}})
	if err := w.w.Start(); err != nil {
		w.t.Fatal(err)
	}
	stop := w.w.Stop
	w.t.Cleanup(stop)
}

// startDownload does what the API does: it creates the image record, then
// starts the workflow.
func (w *world) startDownload(imageID string) client.WorkflowRun {
	w.t.Helper()
	return w.startDownloadWith(imageID, "")
}

// startDownloadWith is startDownload naming a source credential.
func (w *world) startDownloadWith(imageID, credential string) client.WorkflowRun {
	w.t.Helper()
	ctx := context.Background()
	e, _ := w.cat.Get(entryID)
	img := &store.Image{ID: imageID, Name: e.Name, CatalogID: e.ID, SourceURL: e.URL, SourceKey: source.SourceKey(e.ID, ""),
		PoolID: poolID, FileName: catalog.FileName(e.ID, e.URL), WorkflowID: workflows.WorkflowID(imageID), Credential: credential}
	if _, created, err := w.store.CreateImage(ctx, img); err != nil || !created {
		w.t.Fatalf("create image: created=%v %v", created, err)
	}
	run, err := w.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(imageID), TaskQueue: workflows.TaskQueue},
		workflows.WorkflowType, workflows.Input{ImageID: imageID, CatalogID: entryID, PoolID: poolID, Credential: credential})
	if err != nil {
		w.t.Fatal(err)
	}
	return run
}

func (w *world) result(run client.WorkflowRun) workflows.Result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res workflows.Result
	if err := run.Get(ctx, &res); err != nil {
		w.t.Fatalf("workflow %s: %v", run.GetID(), err)
	}
	return res
}

func (w *world) progress(workflowID string) workflows.ProgressState {
	w.t.Helper()
	v, err := w.c.QueryWorkflow(context.Background(), workflowID, "", workflows.ProgressQuery)
	if err != nil {
		w.t.Fatalf("query %s: %v", workflowID, err)
	}
	var s workflows.ProgressState
	if err := v.Get(&s); err != nil {
		w.t.Fatal(err)
	}
	return s
}

// checkReady checks the contract's READY: the whole file at the path, with
// the right checksum, and the record saying so.
func (w *world) checkReady(imageID string, res workflows.Result) store.Image {
	w.t.Helper()
	want := testenv.SHA256(w.data)
	if res.ImageID != imageID || res.Checksum != want || res.SizeBytes != int64(len(w.data)) {
		w.t.Fatalf("result = %+v, want checksum %s and %d bytes", res, want, len(w.data))
	}
	got, err := os.ReadFile(res.Path)
	if err != nil {
		w.t.Fatalf("published file: %v", err)
	}
	if testenv.SHA256(got) != want {
		w.t.Fatalf("file at %s has checksum %s, want %s", res.Path, testenv.SHA256(got), want)
	}
	img, err := w.store.Image(context.Background(), imageID)
	if err != nil {
		w.t.Fatal(err)
	}
	if img.Status != store.StatusReady || img.Path != res.Path || img.NodeID != res.NodeID || img.Checksum != want ||
		img.SizeBytes != int64(len(w.data)) || img.ReadyAt == nil || img.Unverified {
		w.t.Fatalf("image record = %+v", img)
	}
	if dir := filepath.Dir(res.Path); !strings.HasSuffix(dir, agentclient.ImagesDir) {
		w.t.Fatalf("published at %s, not in the pool's %s", res.Path, agentclient.ImagesDir)
	}
	return img
}

// waitTransferring waits until a node reports bytes of the image's
// download, and returns that node and its job.
func (w *world) waitTransferring(imageID string, atLeast int64) (string, agentclient.Download) {
	w.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		img, err := w.store.Image(context.Background(), imageID)
		if err == nil && img.NodeID != "" {
			if a := w.agents[img.NodeID]; a != nil {
				if d, err := a.Client().Download(context.Background(), imageID); err == nil && d.BytesDone >= atLeast {
					return img.NodeID, d
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("image %s never transferred %d bytes", imageID, atLeast)
	return "", agentclient.Download{}
}

// waitRecord polls the image record until ok says yes, and returns it.
func (w *world) waitRecord(imageID string, ok func(store.Image) bool) store.Image {
	w.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		img, err := w.store.Image(context.Background(), imageID)
		if err == nil && ok(img) {
			return img
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("image %s: the record never got there", imageID)
	return store.Image{}
}
