package activities_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/egress"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/store"
)

func (b *bench) pick(req activities.PickRequest) activities.Pick {
	b.t.Helper()
	v, err := b.env.ExecuteActivity(b.acts.PickNode, req)
	if err != nil {
		b.t.Fatal(err)
	}
	var p activities.Pick
	if err := v.Get(&p); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func reasons(p activities.Pick) map[string]string {
	m := map[string]string{}
	for _, r := range p.Refused {
		m[r.NodeID] = r.Reason
	}
	return m
}

func TestPickNodeRanksHealthyNodesAndSaysWhyOthersAreRefused(t *testing.T) {
	busy := newFakeAgent(t, "node-busy", "pool-1")
	busy.health.ActiveDownloads = 3
	idle := newFakeAgent(t, "node-idle", "pool-1")
	idle.health.ActiveDownloads = 0
	roomy := newFakeAgent(t, "node-roomy", "pool-1")
	roomy.health.Pools[0].FreeBytes = 5 << 30
	other := newFakeAgent(t, "node-other", "pool-9")
	dead := newFakeAgent(t, "node-dead", "pool-1")
	dead.down = true
	b := newBench(t, false, busy, idle, roomy, other, dead)

	p := b.pick(activities.PickRequest{PoolID: "pool-1"})
	if p.Node == nil || p.Node.NodeID != "node-roomy" {
		t.Fatalf("picked %+v, want node-roomy (idle, most free space)", p.Node)
	}
	r := reasons(p)
	if !strings.Contains(r["node-other"], `does not serve pool "pool-1"`) || !strings.Contains(r["node-dead"], "health check") {
		t.Fatalf("refusals = %v", r)
	}
	if len(p.Assigned) != 5 {
		t.Fatalf("assigned = %v", p.Assigned)
	}
	// The preferred node wins while it is usable, even when busy.
	if p := b.pick(activities.PickRequest{PoolID: "pool-1", PreferredNodeID: "node-busy"}); p.Node == nil || p.Node.NodeID != "node-busy" {
		t.Fatalf("picked %+v, want the preferred node-busy", p.Node)
	}
	// A node that failed in this download is never picked again.
	p = b.pick(activities.PickRequest{PoolID: "pool-1", PreferredNodeID: "node-roomy", Exclude: []string{"node-roomy"}})
	if p.Node == nil || p.Node.NodeID != "node-idle" || !strings.Contains(reasons(p)["node-roomy"], "already failed") {
		t.Fatalf("picked %+v, refusals %v", p.Node, reasons(p))
	}
	// Health checks are recorded on the nodes.
	n, err := b.store.Node(context.Background(), "node-dead")
	if err != nil || n.Status != store.NodeOffline {
		t.Fatalf("node-dead = %+v, %v; want offline", n, err)
	}
	n, err = b.store.Node(context.Background(), "node-idle")
	if err != nil || n.Status != store.NodeOnline || len(n.Pools) != 1 {
		t.Fatalf("node-idle = %+v, %v; want online with its pool", n, err)
	}
}

// A node left behind because it was unreachable (its agent crashed, it
// rebooted) is picked again once it is back, but only when no other node
// can take the download: a pool's only node would otherwise be lost to the
// download for good.
func TestPickNodeTakesBackAnUnreachableNodeOnlyAsALastResort(t *testing.T) {
	back := newFakeAgent(t, "node-back", "pool-1")
	back.health.Pools[0].FreeBytes = 5 << 30
	other := newFakeAgent(t, "node-other", "pool-1")
	b := newBench(t, false, back, other)
	req := activities.PickRequest{PoolID: "pool-1", Exclude: []string{"node-back"}, LastResort: []string{"node-back"}}

	if p := b.pick(req); p.Node == nil || p.Node.NodeID != "node-other" {
		t.Fatalf("picked %+v, want node-other: another node goes first", p.Node)
	}
	other.set(func(f *fakeAgent) { f.down = true })
	if p := b.pick(req); p.Node == nil || p.Node.NodeID != "node-back" {
		t.Fatalf("picked %+v (refusals %v), want node-back again: no other node can take it", p.Node, reasons(p))
	}
	// Down again, it is refused for what its health check says.
	back.set(func(f *fakeAgent) { f.down = true })
	p := b.pick(req)
	if p.Node != nil || !strings.Contains(reasons(p)["node-back"], "health check") {
		t.Fatalf("picked %+v, refusals %v; want none, node-back refused by its health check", p.Node, reasons(p))
	}
	// A node that failed otherwise (a full disk, say) stays excluded.
	back.set(func(f *fakeAgent) { f.down = false })
	p = b.pick(activities.PickRequest{PoolID: "pool-1", Exclude: []string{"node-back"}})
	if p.Node != nil || !strings.Contains(reasons(p)["node-back"], "already failed") {
		t.Fatalf("picked %+v, refusals %v; want none, node-back already failed", p.Node, reasons(p))
	}
}

func TestPickNodeRefusesAnAgentThatIsAnotherNode(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	agent.set(func(f *fakeAgent) { f.health.NodeID = "node-7" })
	p := b.pick(activities.PickRequest{PoolID: "pool-1"})
	if p.Node != nil || !strings.Contains(reasons(p)["node-1"], `says it is node "node-7"`) {
		t.Fatalf("pick = %+v", p)
	}
	// Recorded offline, as the API's health checks do: not online with
	// another node's pools.
	n, err := b.store.Node(context.Background(), "node-1")
	if err != nil || n.Status != store.NodeOffline {
		t.Fatalf("node-1 = %+v, %v; want offline", n, err)
	}
}

func TestEnsureImageCreatesTheRecordOfACLIStartedWorkflow(t *testing.T) {
	b := newBench(t, true)
	src := source.Source{CatalogID: "y", URL: "https://example.com/y.img", Name: "Y", FileName: "y.img", SourceKey: "catalog:y"}
	v, err := b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: "cli-1", WorkflowID: "image-cli-1", PoolID: "pool-1", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	var plan activities.Plan
	if err := v.Get(&plan); err != nil {
		t.Fatal(err)
	}
	if plan.ImageID != "cli-1" || plan.FileName != "y.img" || !plan.Shared || plan.NoNodeTimeout <= 0 || plan.HeartbeatTimeout <= 0 {
		t.Fatalf("plan = %+v", plan)
	}
	img, err := b.store.Image(context.Background(), "cli-1")
	if err != nil || img.Status != store.StatusPending || img.WorkflowID != "image-cli-1" || img.CatalogID != "y" {
		t.Fatalf("image = %+v, %v", img, err)
	}
	// Running it again (a retried activity) finds the same record.
	if _, err := b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: "cli-1", WorkflowID: "image-cli-1", PoolID: "pool-1", Source: src}); err != nil {
		t.Fatal(err)
	}
	// A second image of a source that is live in the pool is refused.
	_, err = b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: "cli-2", WorkflowID: "image-cli-2", PoolID: "pool-1", Source: src})
	if typ, nonRetryable := errorType(t, err); typ != fault.Conflict || !nonRetryable || !strings.Contains(err.Error(), `image "cli-1"`) {
		t.Fatalf("error = %v", err)
	}
	// An unknown pool says what to do.
	_, err = b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: "cli-3", PoolID: "nope", Source: src})
	if typ, _ := errorType(t, err); typ != fault.PoolNotFound {
		t.Fatalf("error = %v", err)
	}
}

func TestResolveSource(t *testing.T) {
	b := newBench(t, false)
	cases := []struct {
		name     string
		req      source.Request
		wantType string
		check    func(source.Source) bool
	}{
		{"catalog entry", source.Request{CatalogID: "x", PoolID: "p"}, "",
			func(s source.Source) bool {
				return s.FileName == "x.qcow2" && s.SourceKey == "catalog:x" && s.Checksum == sum256
			}},
		{"checksum without its algorithm", source.Request{URL: "https://example.com/a/b.qcow2?sig=1", Checksum: strings.ToUpper(sum256[7:]), PoolID: "p"}, fault.InvalidRequest, nil},
		{"url", source.Request{URL: "https://example.com/a/b.qcow2", Name: "mine", Checksum: sum256, PoolID: "p"}, "",
			func(s source.Source) bool {
				return s.FileName == "mine.qcow2" && s.SourceKey == "https://example.com/a/b.qcow2"
			}},
		{"unknown entry", source.Request{CatalogID: "nope", PoolID: "p"}, fault.CatalogEntryNotFound, nil},
		{"file url", source.Request{URL: "file:///etc/passwd", PoolID: "p"}, fault.URLForbidden, nil},
		{"url with password", source.Request{URL: "https://u:secret@example.com/x.img", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, nil},
		{"url without checksum", source.Request{URL: "https://example.com/x.img", PoolID: "p"}, fault.InvalidRequest, nil},
		{"bad name", source.Request{URL: "https://example.com/x.img", Name: "../x", PoolID: "p"}, fault.InvalidRequest, nil},
		{"no pool", source.Request{CatalogID: "x"}, fault.InvalidRequest, nil},
		{"nothing", source.Request{PoolID: "p"}, fault.InvalidRequest, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := b.env.ExecuteActivity(b.acts.ResolveSource, c.req)
			if c.wantType != "" {
				if typ, _ := errorType(t, err); typ != c.wantType {
					t.Fatalf("error = %v, want %s", err, c.wantType)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s source.Source
			if err := v.Get(&s); err != nil || !c.check(s) {
				t.Fatalf("source = %+v, %v", s, err)
			}
		})
	}
}

func TestResolveChecksumFromTheVendorFile(t *testing.T) {
	hexA := strings.Repeat("ab", 32)
	mux := http.NewServeMux()
	mux.HandleFunc("/SHA256SUMS", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("cd", 32) + " *other.img\n" + hexA + " *x.qcow2\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cases := []struct {
		name            string
		checksumURL     string
		allowUnverified bool
		wantSum         string
		wantUnverified  bool
		wantType        string
	}{
		{"listed", srv.URL + "/SHA256SUMS", false, "sha256:" + hexA, false, ""},
		{"checksum file missing", srv.URL + "/MISSING", false, "", false, fault.ChecksumUnavailable},
		{"checksum file missing, unverified accepted", srv.URL + "/MISSING", true, "", true, ""},
		{"no checksum file at all", "", false, "", false, fault.ChecksumUnavailable},
		{"vendor unreachable", closedURL(t) + "/SHA256SUMS", false, "", false, fault.ChecksumUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBench(t, false)
			src := source.Source{URL: "https://example.com/x.qcow2", ChecksumURL: c.checksumURL}
			v, err := b.env.ExecuteActivity(b.acts.ResolveChecksum, activities.ChecksumRequest{ImageID: "img-1", Source: src, AllowUnverified: c.allowUnverified})
			if c.wantType != "" {
				if typ, _ := errorType(t, err); typ != c.wantType {
					t.Fatalf("error = %v, want %s", err, c.wantType)
				}
				if c.name == "vendor unreachable" && !strings.Contains(err.Error(), "internet access") {
					t.Fatalf("error = %v, want it to say to check the worker's internet access", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got source.Source
			if err := v.Get(&got); err != nil || got.Checksum != c.wantSum || got.Unverified != c.wantUnverified {
				t.Fatalf("source = %+v, %v", got, err)
			}
			img, _ := b.store.Image(context.Background(), "img-1")
			if img.Checksum != c.wantSum || img.Unverified != c.wantUnverified {
				t.Fatalf("image checksum %q unverified %v", img.Checksum, img.Unverified)
			}
		})
	}
}

func TestResolveChecksumOfADeletedImageIsNotFound(t *testing.T) {
	b := newBench(t, false)
	if err := b.store.DeleteImage(context.Background(), "img-1"); err != nil {
		t.Fatal(err)
	}
	src := source.Source{URL: "https://example.com/x.qcow2", Checksum: sum256}
	_, err := b.env.ExecuteActivity(b.acts.ResolveChecksum, activities.ChecksumRequest{ImageID: "img-1", Source: src})
	if typ, nonRetryable := errorType(t, err); typ != fault.NotFound || !nonRetryable || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("error = %v (%s, non-retryable %v), want a fatal not_found that says the record was deleted", err, typ, nonRetryable)
	}
}

func TestStartOnNode(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	v, err := b.env.ExecuteActivity(b.acts.StartOnNode, job("node-1", false))
	if err != nil {
		t.Fatal(err)
	}
	var st activities.Started
	if err := v.Get(&st); err != nil || st.NodeID != "node-1" || st.Path != "/pool/cloud-images/x.qcow2" {
		t.Fatalf("started = %+v, %v", st, err)
	}
	if got := agent.started(); len(got) != 1 || got[0].ID != "img-1" || got[0].Checksum != sum256 || got[0].SizeBytes != 0 {
		t.Fatalf("agent got %+v", got)
	}
	// The status is the workflow's to record, not the node step's.
	if img, _ := b.store.Image(context.Background(), "img-1"); img.Status != store.StatusPending {
		t.Fatalf("StartOnNode moved the image to %s; only the workflow records a status", img.Status)
	}

	// A node that does not answer is left to the retry policy; one that
	// refuses our token fails over at once.
	agent.set(func(f *fakeAgent) { f.down = true })
	_, err = b.env.ExecuteActivity(b.acts.StartOnNode, job("node-1", false))
	if typ, nonRetryable := errorType(t, err); typ != fault.NodeUnreachable || nonRetryable {
		t.Fatalf("error = %v", err)
	}
	b.acts.NodeToken = "wrong"
	agent.set(func(f *fakeAgent) { f.down = false })
	_, err = b.env.ExecuteActivity(b.acts.StartOnNode, job("node-1", false))
	if typ, nonRetryable := errorType(t, err); typ != activities.FailoverError || !nonRetryable {
		t.Fatalf("error = %v", err)
	}
}

func TestCancelOnNode(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	if _, err := b.env.ExecuteActivity(b.acts.CancelOnNode, activities.CancelRequest{NodeID: "node-1", DownloadID: "img-1"}); err != nil {
		t.Fatal(err)
	}
	if got := agent.cancelled(); len(got) != 1 || got[0] != "img-1" {
		t.Fatalf("agent cancelled %v", got)
	}
	if _, err := b.env.ExecuteActivity(b.acts.RemoveFile, activities.FileRequest{NodeID: "node-1", PoolID: "pool-1", FileName: "x.qcow2"}); err != nil {
		t.Fatal(err)
	}
	if got := agent.removedFiles(); len(got) != 1 || got[0] != "pool-1/x.qcow2" {
		t.Fatalf("agent removed %v", got)
	}
	// A deleted node has nothing left to clean.
	if _, err := b.env.ExecuteActivity(b.acts.CancelOnNode, activities.CancelRequest{NodeID: "gone", DownloadID: "img-1"}); err != nil {
		t.Fatal(err)
	}
}

// The workflow records each status through these, in order; each keeps
// its own fields and the store keeps terminal statuses terminal.
func TestMarkSteps(t *testing.T) {
	b := newBench(t, false)
	ctx := context.Background()
	image := func() store.Image {
		t.Helper()
		img, err := b.store.Image(ctx, "img-1")
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	step := func(fn, req any) {
		t.Helper()
		if _, err := b.env.ExecuteActivity(fn, req); err != nil {
			t.Fatal(err)
		}
	}
	step(b.acts.MarkDownloading, activities.DownloadingRequest{ImageID: "img-1", NodeID: "node-1", Attempt: 1, Path: "/p/x.qcow2", BytesDone: 5, BytesTotal: 42})
	if img := image(); img.Status != store.StatusDownloading || img.NodeID != "node-1" || img.Attempt != 1 || img.Path != "/p/x.qcow2" || img.BytesTotal != 42 {
		t.Fatalf("downloading image = %+v", img)
	}
	at := time.Now().UTC().Truncate(time.Second)
	step(b.acts.RecordFailovers, activities.FailoversRequest{ImageID: "img-1", Failovers: []store.Failover{{NodeID: "node-0", Reason: "gone", At: at}}})
	if img := image(); len(img.Failovers) != 1 || img.Failovers[0].NodeID != "node-0" || img.Status != store.StatusDownloading {
		t.Fatalf("failovers of a live image = %+v (%s)", img.Failovers, img.Status)
	}
	step(b.acts.MarkVerifying, activities.VerifyingRequest{ImageID: "img-1", NodeID: "node-1"})
	if img := image(); img.Status != store.StatusVerifying {
		t.Fatalf("status %s, want VERIFYING", img.Status)
	}
	step(b.acts.MarkReady, activities.ReadyRequest{ImageID: "img-1", Finished: activities.Finished{NodeID: "node-1", Path: "/p/x.qcow2",
		SizeBytes: 42, Checksum: sum256, Format: "qcow2", VirtualSizeBytes: 1 << 20, Compression: "gzip", FileChecksum: fileSum256},
		Failovers: []store.Failover{{NodeID: "node-0", Reason: "gone", At: at}}})
	img := image()
	if img.Status != store.StatusReady || img.Path != "/p/x.qcow2" || img.SizeBytes != 42 || img.ReadyAt == nil || img.BytesDone != 42 || len(img.Failovers) != 1 {
		t.Fatalf("image = %+v", img)
	}
	if img.Format != "qcow2" || img.VirtualSizeBytes != 1<<20 || img.Compression != "gzip" || img.SourceChecksum != sum256 || img.FileChecksum != fileSum256 {
		t.Fatalf("READY image: format %q, virtual size %d, compression %q, source checksum %q, file checksum %q",
			img.Format, img.VirtualSizeBytes, img.Compression, img.SourceChecksum, img.FileChecksum)
	}
	// A READY image is not failed, cancelled or moved back afterwards.
	step(b.acts.MarkFailed, activities.FailRequest{ImageID: "img-1", Code: fault.Internal, Message: "x"})
	step(b.acts.MarkCancelled, activities.CancelledRequest{ImageID: "img-1"})
	if _, err := b.env.ExecuteActivity(b.acts.MarkVerifying, activities.VerifyingRequest{ImageID: "img-1", NodeID: "node-1"}); err == nil {
		t.Fatal("MarkVerifying of a READY image succeeded")
	}
	if img := image(); img.Status != store.StatusReady {
		t.Fatalf("status %s, want READY kept", img.Status)
	}
}

// closedURL is the URL of a local port where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestPickNodeGivesAPoolWithAnImageFormatOnlyToAgentsThatConvert(t *testing.T) {
	conv := newFakeAgent(t, "node-conv", "pool-1", "raw-1")
	conv.health.Features = []string{agentclient.FeatureConvert}
	conv.health.ActiveDownloads = 5 // busier: picked only because the other cannot convert
	plain := newFakeAgent(t, "node-plain", "pool-1", "raw-1")
	b := newBench(t, false, conv, plain)
	ctx := context.Background()
	if err := b.store.CreatePool(ctx, &store.Pool{ID: "raw-1", Type: "local", ImageFormat: "raw"}, []string{"node-conv", "node-plain"}); err != nil {
		t.Fatal(err)
	}

	p := b.pick(activities.PickRequest{PoolID: "raw-1"})
	if p.Node == nil || p.Node.NodeID != "node-conv" || !p.Node.Converts {
		t.Fatalf("picked %+v for a raw pool, want node-conv, which converts", p.Node)
	}
	r := reasons(p)["node-plain"]
	if !strings.Contains(r, "node-plain has no qemu-img") || !strings.Contains(r, "install qemu-utils") || !strings.Contains(r, `"raw-1"`) {
		t.Fatalf("node-plain refused for %q; want it to say it has no qemu-img and to install qemu-utils", r)
	}
	// With no agent that converts, nothing is picked, and the refusals
	// (which the workflow's no_node_available names) say why.
	p = b.pick(activities.PickRequest{PoolID: "raw-1", Exclude: []string{"node-conv"}})
	if p.Node != nil || !strings.Contains(reasons(p)["node-plain"], "no qemu-img") {
		t.Fatalf("pick without node-conv = %+v, want none, node-plain refused for no qemu-img", p)
	}
	// A pool that keeps the vendor's format takes either.
	p = b.pick(activities.PickRequest{PoolID: "pool-1"})
	if p.Node == nil || p.Node.NodeID != "node-plain" || len(p.Refused) != 0 {
		t.Fatalf("pick for pool-1 = %+v, want node-plain (idle), none refused", p)
	}
}

func TestStartOnNodeSendsConvertToOnlyToAnAgentThatConverts(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	if err := b.store.CreatePool(context.Background(), &store.Pool{ID: "raw-1", Type: "local", ImageFormat: "raw"}, []string{"node-1"}); err != nil {
		t.Fatal(err)
	}
	// The plan carries the pool's format to the workflow.
	v, err := b.env.ExecuteActivity(b.acts.EnsureImage, activities.ImageRequest{ImageID: "img-raw", WorkflowID: "image-img-raw", PoolID: "raw-1",
		Source: source.Source{URL: "https://example.com/x.qcow2", FileName: "x.qcow2", SourceKey: "url:x"}})
	if err != nil {
		t.Fatal(err)
	}
	var plan activities.Plan
	if err := v.Get(&plan); err != nil || plan.ImageFormat != "raw" {
		t.Fatalf("plan of a raw pool's image: %+v, %v; want ImageFormat raw", plan, err)
	}

	// Each start is a new job id: the fake agent records every request.
	start := func(id, format string, converts bool) error {
		j := job("node-1", false)
		j.DownloadID, j.ImageFormat, j.NodeConverts = id, format, converts
		_, err := b.env.ExecuteActivity(b.acts.StartOnNode, j)
		return err
	}
	if err := start("keep", "", true); err != nil {
		t.Fatal(err)
	}
	if err := start("conv", "raw", true); err != nil {
		t.Fatal(err)
	}
	err = start("noconv", "raw", false)
	if typ, nonRetryable := errorType(t, err); typ != activities.FailoverError || !nonRetryable || !strings.Contains(err.Error(), "qemu-img") {
		t.Fatalf("start on an agent without qemu-img for a raw pool: %v; want a failover naming qemu-img", err)
	}
	got := agent.started()
	if len(got) != 2 || got[0].ID != "keep" || got[0].ConvertTo != "" || got[1].ID != "conv" || got[1].ConvertTo != "raw" {
		t.Fatalf("agent got %+v; want keep without convert_to and conv with raw, and nothing for noconv", got)
	}
}

func TestStartOnNodeSendsABandwidthCapOnlyToAnAgentThatSupportsIt(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	// The node's features are what the pick judged from its health.
	start := func(id string, bps int64, features ...string) {
		t.Helper()
		j := job("node-1", false)
		j.DownloadID, j.MaxBytesPerSecond, j.NodeFeatures = id, bps, features
		if _, err := b.env.ExecuteActivity(b.acts.StartOnNode, j); err != nil {
			t.Fatal(err)
		}
	}
	start("old-agent", 5_000_000) // its health named no features
	start("capped", 5_000_000, agentclient.FeatureBandwidthLimit)
	start("uncapped", 0, agentclient.FeatureBandwidthLimit)
	got := agent.started()
	if len(got) != 3 || got[0].MaxBytesPerSecond != 0 || got[1].MaxBytesPerSecond != 5_000_000 || got[2].MaxBytesPerSecond != 0 {
		t.Fatalf("agent got %+v; want the cap only for the agent that supports it, and only when asked", got)
	}
}

// TestResolveChecksumThroughProxyWithPrivateCA: the worker's client for
// checksum files (as workers.Run builds it from --proxy and --ca-file)
// fetches a vendor's file over https through a proxy that wants
// credentials, from a mirror whose certificate a private CA signed.
func TestResolveChecksumThroughProxyWithPrivateCA(t *testing.T) {
	ca := testenv.NewCA(t, "127.0.0.1", testenv.PublicIP)
	up := testenv.NewTLSUpstream(t, ca)
	hexA := strings.Repeat("ab", 32)
	up.AddFile("SHA256SUMS", []byte(hexA+" *x.qcow2\n"))
	proxy := testenv.NewProxy(t, testenv.ProxyOptions{User: "worker", Password: "proxy-pass-123", Route: up.Addr()})
	p, err := egress.NewProxy(proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	src := source.Source{URL: "https://" + testenv.PublicIP + "/x.qcow2", ChecksumURL: "https://" + testenv.PublicIP + "/SHA256SUMS"}
	for _, tc := range []struct {
		name    string
		caFile  string
		wantErr string
	}{
		{"without the CA", "", "certificate"},
		{"with the CA", ca.CAFile, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots, err := egress.RootCAs(tc.caFile)
			if err != nil {
				t.Fatal(err)
			}
			b := newBench(t, false)
			b.acts.HTTP = egress.Client(p, roots, 10*time.Second)
			v, err := b.env.ExecuteActivity(b.acts.ResolveChecksum, activities.ChecksumRequest{ImageID: "img-1", Source: src})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "proxy-pass-123") {
					t.Fatalf("error = %v; want one about the %s, without the proxy's password", err, tc.wantErr)
				}
				return
			}
			var got source.Source
			if err != nil || v.Get(&got) != nil || got.Checksum != "sha256:"+hexA {
				t.Fatalf("source = %+v, %v", got, err)
			}
		})
	}
	if asked := proxy.Requests(); len(asked) != 2 || asked[0] != "CONNECT "+testenv.PublicIP+":443" || proxy.Refused() != 0 {
		t.Errorf("proxy was asked %q (%d refused); want two tunnels, with credentials", asked, proxy.Refused())
	}
}
