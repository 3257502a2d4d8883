package workers_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// refresh runs RefreshImageWorkflow as the schedule would, and returns
// its result and workflow id.
func (w *world) refresh(subID, runID string) (workflows.RefreshResult, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := workflows.RefreshWorkflowID(subID) + "-" + runID
	run, err := w.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.RefreshWorkflowType, workflows.RefreshInput{SubscriptionID: subID})
	if err != nil {
		w.t.Fatal(err)
	}
	var res workflows.RefreshResult
	if err := run.Get(ctx, &res); err != nil {
		w.t.Fatalf("refresh %s: %v", id, err)
	}
	return res, id
}

// TestRefreshWithTheRealWorkerDownloadsLinksAndAsksConditionally runs
// RefreshImageWorkflow on the in-process worker against real agents and
// the mirror: a new build is downloaded as its own image and -latest is a
// hard link to it; an unchanged checksum file is a 304 and changes
// nothing; a new build moves -latest while a reader of the old file keeps
// its bytes. The histories are recorded for the replay test.
func TestRefreshWithTheRealWorkerDownloadsLinksAndAsksConditionally(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 512 << 10})
	ctx := context.Background()
	sub := &store.Subscription{ID: "s1", CatalogID: entryID, PoolIDs: store.StringList{poolID}, Every: "1h", Keep: 1}
	if err := w.store.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}

	res, wfID := w.refresh(sub.ID, "1")
	if len(res.Downloaded) != 1 || len(res.Linked) != 1 || res.NotModified {
		t.Fatalf("first refresh: %+v", res)
	}
	first, err := w.store.Image(ctx, res.Downloaded[0])
	if err != nil {
		t.Fatal(err)
	}
	wantVersion := testenv.SHA256(w.data)[len("sha256:"):][:12]
	if first.Status != store.StatusReady || first.Version != wantVersion || first.FileName != entryID+"-"+wantVersion+".qcow2" ||
		first.SourceKey != source.BuildSourceKey(entryID, testenv.SHA256(w.data)) {
		t.Fatalf("first build's image: %+v", first)
	}
	latest := filepath.Join(filepath.Dir(first.Path), entryID+"-latest.qcow2")
	if ino(t, latest) != ino(t, first.Path) {
		t.Fatalf("%s is not a link to %s", latest, first.Path)
	}
	recordHistory(t, srv, wfID, "refresh-new-build.json")

	// Unchanged: a 304, nothing downloaded, -latest still in place.
	res, wfID = w.refresh(sub.ID, "2")
	if !res.NotModified || len(res.Downloaded) != 0 || w.up.NotModified("SHA256SUMS") != 1 {
		t.Fatalf("unchanged refresh: %+v, 304s %d", res, w.up.NotModified("SHA256SUMS"))
	}
	recordHistory(t, srv, wfID, "refresh-unchanged.json")

	// A VM reads the old file through -latest while build 2 comes in.
	reader, err := os.Open(latest)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	old := w.data
	w.data = testenv.QCOW2Image(512<<10, 99)
	w.up.AddFile(imageFile, w.data)
	w.up.AddChecksumFile("SHA256SUMS", testenv.SHA256SUMS, imageFile)
	res, _ = w.refresh(sub.ID, "3")
	if len(res.Downloaded) != 1 || len(res.Removed) != 1 || res.Removed[0] != first.ID {
		t.Fatalf("refresh of build 2 with keep 1: %+v, want build 1 removed", res)
	}
	second, _ := w.store.Image(ctx, res.Downloaded[0])
	if ino(t, latest) != ino(t, second.Path) {
		t.Fatalf("%s does not name build 2's file", latest)
	}
	if _, err := os.Stat(first.Path); !os.IsNotExist(err) {
		t.Fatalf("build 1's file: %v, want it removed", err)
	}
	got := make([]byte, len(old))
	if _, err := reader.ReadAt(got, 0); err != nil || testenv.SHA256(got) != testenv.SHA256(old) {
		t.Fatalf("the reader of the old -latest lost its bytes: %v", err)
	}
	if s, _ := w.store.Subscription(ctx, sub.ID); s.CurrentVersion != second.Version || s.LastError != "" {
		t.Fatalf("subscription after build 2: %+v", s)
	}
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
