package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
)

// A pool's own transfer windows win; a pool without any gets the
// worker's cluster-wide default.
func TestEnsureImagePlansThePoolsWindowsOrTheClusterDefault(t *testing.T) {
	b := newBench(t, false)
	ctx := context.Background()
	if err := b.store.CreatePool(ctx, &store.Pool{ID: "night", Type: "local", TransferWindows: store.StringList{"22:00-06:00"}, TimeZone: "Europe/Berlin"}, nil); err != nil {
		t.Fatal(err)
	}
	b.acts.Settings.TransferWindows, b.acts.Settings.TransferTimeZone = []string{"01:00-05:00"}, "America/New_York"
	plan := func(id, pool string) activities.Plan {
		t.Helper()
		src := source.Source{CatalogID: id, URL: "https://example.com/" + id + ".img", Name: id, FileName: id + ".img", SourceKey: "catalog:" + id}
		v, err := b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: id, WorkflowID: "image-" + id, PoolID: pool, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		var p activities.Plan
		if err := v.Get(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := plan("own", "night"); strings.Join(p.TransferWindows, ",") != "22:00-06:00" || p.TimeZone != "Europe/Berlin" {
		t.Fatalf("pool with windows: plan has %v %q", p.TransferWindows, p.TimeZone)
	}
	if p := plan("dflt", "pool-1"); strings.Join(p.TransferWindows, ",") != "01:00-05:00" || p.TimeZone != "America/New_York" {
		t.Fatalf("pool without windows: plan has %v %q, want the cluster default", p.TransferWindows, p.TimeZone)
	}
	b.acts.Settings.TransferWindows, b.acts.Settings.TransferTimeZone = nil, ""
	if p := plan("any", "pool-1"); len(p.TransferWindows) != 0 {
		t.Fatalf("no windows anywhere: plan has %v", p.TransferWindows)
	}
}

// PauseOnNode against a real agent process: it pauses a running job
// (partial kept, as the agent's own tests check), reports a job that
// finished before the pause came, and fails in a way the workflow can
// retry or fail over from when the node is gone.
func TestPauseOnNodeWithARealAgent(t *testing.T) {
	const secret = "cluster-secret-0123456789"
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 71)
	url := up.AddFile("w.qcow2", data)
	up.SetFault("w.qcow2", testenv.Fault{BytesPerSecond: 1 << 20})
	agent := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-1", Token: nodeauth.Credential(secret, "node-1"), AllowPrivateNetworks: true,
		Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: t.TempDir()}}})
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateNode(ctx, &store.Node{ID: "node-1", Address: agent.Address()}); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	acts := &activities.Activities{Store: st, NodeToken: secret}
	env.RegisterActivity(acts)
	pause := func(node string) (activities.Paused, error) {
		v, err := env.ExecuteActivity(acts.PauseOnNode, activities.CancelRequest{NodeID: node, DownloadID: "w"})
		var p activities.Paused
		if err == nil {
			err = v.Get(&p)
		}
		return p, err
	}

	c := agent.Client()
	req := agentclient.DownloadRequest{ID: "w", URL: url, PoolID: "pool-1", FileName: "w.qcow2", Checksum: testenv.SHA256(data)}
	if _, err := c.StartDownload(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitDownload(t, c, "w", func(d agentclient.Download) bool { return d.BytesDone > 0 })
	p, err := pause("node-1")
	if err != nil || p.State != activities.NodePaused || p.BytesDone <= 0 {
		t.Fatalf("pause of a running job: %+v %v", p, err)
	}

	up.SetFault("w.qcow2", testenv.Fault{})
	if _, err := c.StartDownload(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitDownload(t, c, "w", agentclient.Download.Finished)
	p, err = pause("node-1")
	if err != nil || p.State != agentclient.StateCompleted || p.BytesDone != int64(len(data)) {
		t.Fatalf("pause of a job that finished: %+v %v; want its completed state, no error", p, err)
	}

	if _, err := pause("gone"); err == nil {
		t.Fatal("pause on a deleted node: no error")
	} else if typ, nonRetryable := errorType(t, err); typ != activities.FailoverError || !nonRetryable {
		t.Fatalf("pause on a deleted node: %v, want a failover", err)
	}
	agent.Kill()
	if _, err := pause("node-1"); err == nil {
		t.Fatal("pause on a dead agent: no error")
	} else if typ, nonRetryable := errorType(t, err); typ != fault.NodeUnreachable || nonRetryable {
		t.Fatalf("pause on a dead agent: %v, want a retryable node_unreachable", err)
	}
}

func waitDownload(t *testing.T, c *agentclient.Client, id string, ok func(agentclient.Download) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := c.Download(context.Background(), id)
		if err == nil && ok(d) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("download %s: %+v %v", id, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
