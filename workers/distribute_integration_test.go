package workers_test

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// TestDistributionWithTheRealWorkerCopiesFromThePeer runs
// DistributeImageWorkflow on the in-process worker against real agents:
// the first pool's copy from the mirror, the second's from the first
// node's file, agent to agent; the history is recorded for the replay test.
func TestDistributionWithTheRealWorkerCopiesFromThePeer(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 512 << 10})
	ctx := context.Background()
	a2 := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-2", Token: nodeauth.Credential(nodeToken, "node-2"), AllowPrivateNetworks: true,
		Pools: []nodeagent.PoolDir{{ID: "p2", Dir: t.TempDir()}}})
	if err := w.store.CreateNode(ctx, &store.Node{ID: "node-2", Name: "node-2", Address: a2.Address()}); err != nil {
		t.Fatal(err)
	}
	if err := w.store.CreatePool(ctx, &store.Pool{ID: "p2", Name: "p2", Type: "local"}, []string{"node-2"}); err != nil {
		t.Fatal(err)
	}
	d := &store.Distribution{ID: "d1", SourceKey: "catalog:" + entryID, PoolKey: poolID + ",p2", CatalogID: entryID,
		PoolIDs: store.StringList{poolID, "p2"}, MaxParallel: 4, WorkflowID: workflows.DistributionWorkflowID("d1")}
	if _, _, err := w.store.CreateDistribution(ctx, d); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	run, err := w.c.ExecuteWorkflow(cctx, client.StartWorkflowOptions{ID: d.WorkflowID, TaskQueue: workflows.TaskQueue},
		workflows.DistributeWorkflowType, workflows.DistributeInput{DistributionID: d.ID, MaxParallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.DistributeResult
	if err := run.Get(cctx, &res); err != nil {
		t.Fatalf("distribution: %v", err)
	}
	got, err := w.store.Distribution(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != store.DistributionReady || got.Status != store.DistributionReady || len(got.Copies) != 2 {
		t.Fatalf("result %+v, distribution %s with copies %+v: want READY with 2", res, got.Status, got.Copies)
	}
	sources := map[string]string{}
	for _, c := range got.Copies {
		sources[c.PoolID] = c.Source
		img, err := w.store.Image(ctx, c.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		if img.Status != store.StatusReady || img.FileChecksum != testenv.SHA256(w.data) {
			t.Fatalf("pool %s: image %s with file checksum %s, want READY with the mirror file's", c.PoolID, img.Status, img.FileChecksum)
		}
	}
	if sources[poolID] != "mirror" || sources["p2"] != "node:node-1" || w.up.BytesServed(imageFile) != int64(len(w.data)) {
		t.Fatalf("copy sources %v, mirror served %d of %d: want the mirror once, then node-1", sources, w.up.BytesServed(imageFile), len(w.data))
	}
	recordHistory(t, srv, d.WorkflowID, "distribute-two-pools.json")
}
