package activities_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// signals records the progress signals the watch sends.
type signals struct {
	mu  sync.Mutex
	got []activities.ProgressUpdate
}

func (s *signals) SignalWorkflow(_ context.Context, _, _, name string, arg any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == activities.ProgressSignal {
		s.got = append(s.got, arg.(activities.ProgressUpdate))
	}
	return nil
}

type bench struct {
	t       *testing.T
	store   *store.Store
	acts    *activities.Activities
	signals *signals
	env     *testsuite.TestActivityEnvironment
}

// newBench is a real SQLite store with pool-1, an image img-1 in it, and
// the given agents registered as nodes assigned to the pool.
func newBench(t *testing.T, shared bool, agents ...*fakeAgent) *bench {
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ids []string
	for _, a := range agents {
		if err := st.CreateNode(ctx, &store.Node{ID: a.health.NodeID, Address: a.address()}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.health.NodeID)
	}
	if err := st.CreatePool(ctx, &store.Pool{ID: "pool-1", Type: "local", Shared: shared}, ids); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateImage(ctx, &store.Image{ID: "img-1", Name: "x", SourceKey: "catalog:x", PoolID: "pool-1", FileName: "x.qcow2"}); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New([]catalog.Entry{{ID: "x", URL: "https://example.com/x.qcow2", Checksum: sum256}})
	if err != nil {
		t.Fatal(err)
	}
	sig := &signals{}
	acts := &activities.Activities{Store: st, Catalog: cat, NodeToken: "node-token", Temporal: sig,
		Settings: activities.Settings{NodeGrace: 2 * time.Second, PollInterval: 50 * time.Millisecond,
			ProgressInterval: 50 * time.Millisecond, SignalInterval: 50 * time.Millisecond, NoNodeTimeout: time.Minute}}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return &bench{t: t, store: st, acts: acts, signals: sig, env: env}
}

const sum256 = "sha256:00000000000000000000000000000000000000000000000000000000000000aa"

func job(nodeID string, shared bool) activities.Job {
	return activities.Job{ImageID: "img-1", DownloadID: "img-1", NodeID: nodeID, PoolID: "pool-1", FileName: "x.qcow2",
		URL: "https://example.com/x.qcow2", Checksum: sum256, Shared: shared, Attempt: 1}
}

func (b *bench) watch(j activities.Job) (activities.Finished, error) {
	b.t.Helper()
	v, err := b.env.ExecuteActivity(b.acts.WatchDownload, j)
	if err != nil {
		return activities.Finished{}, err
	}
	var fin activities.Finished
	if err := v.Get(&fin); err != nil {
		b.t.Fatal(err)
	}
	return fin, nil
}

// errorType is the application error type of an activity's error.
func errorType(t *testing.T, err error) (string, bool) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v is not an application error", err)
	}
	return appErr.Type(), appErr.NonRetryable()
}

// fileSum256 is a published file's checksum, unlike its compressed source's.
var fileSum256 = "sha256:" + strings.Repeat("f", 64)

func running(done, total int64) agentclient.Download {
	return agentclient.Download{ID: "img-1", State: agentclient.StateRunning, BytesDone: done, BytesTotal: total, BytesPerSecond: 100}
}

func TestWatchFollowsTheJobToCompletionAndReportsProgress(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	agent.script = []agentclient.Download{running(300, 1000), running(600, 1000),
		{ID: "img-1", State: agentclient.StateVerifying, BytesDone: 1000, BytesTotal: 1000},
		{ID: "img-1", State: agentclient.StateCompleted, BytesDone: 1000, BytesTotal: 1000, Path: "/p/cloud-images/x.qcow2", Checksum: sum256,
			Format: "qcow2", VirtualSizeBytes: 1 << 30, Compression: "zstd", FileChecksum: fileSum256}}
	b := newBench(t, false, agent)
	if err := b.store.Transition(context.Background(), "img-1", store.ToDownloading{NodeID: "node-1", Attempt: 1}); err != nil {
		t.Fatal(err)
	}

	fin, err := b.watch(job("node-1", false))
	if err != nil {
		t.Fatal(err)
	}
	if want := (activities.Finished{NodeID: "node-1", Path: "/p/cloud-images/x.qcow2", SizeBytes: 1000, Checksum: sum256,
		Format: "qcow2", VirtualSizeBytes: 1 << 30, Compression: "zstd", FileChecksum: fileSum256}); !reflect.DeepEqual(fin, want) {
		t.Fatalf("finished = %+v", fin)
	}
	img, err := b.store.Image(context.Background(), "img-1")
	if err != nil {
		t.Fatal(err)
	}
	// The watch writes bytes only: VERIFYING is the workflow's to record,
	// from the signal.
	if img.Status != store.StatusDownloading || img.BytesDone != 1000 || img.BytesTotal != 1000 || img.ProgressNodeID != "node-1" || img.Attempt != 1 {
		t.Fatalf("image = %+v", img)
	}
	var states []string
	for _, u := range b.signals.got {
		states = append(states, u.State)
	}
	if got := strings.Join(states, ","); !strings.Contains(got, "running") || !strings.Contains(got, "verifying") {
		t.Fatalf("signalled states %q", got)
	}
	if agent.startCount() != 0 {
		t.Fatal("the watch started a download")
	}
}

func TestWatchReattachesWithTheGracePeriodOfTheDeadAttempt(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	agent.down = true
	b := newBench(t, false, agent)
	b.acts.Settings.NodeGrace = 30 * time.Second
	// The previous attempt's worker died after the node had been
	// unreachable for 29.5 s: the new attempt carries the clock on.
	since := time.Now().Add(-29500 * time.Millisecond).UTC()
	b.env.SetHeartbeatDetails(activities.WatchDetails{NodeID: "node-1", DownloadID: "img-1", BytesDone: 500, UnreachableSince: &since})

	start := time.Now()
	_, err := b.watch(job("node-1", false))
	if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "unreachable for") {
		t.Fatalf("error = %v, want a failover for an unreachable node", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s: the grace period started again instead of carrying on", took)
	}
	if agent.startCount() != 0 {
		t.Fatal("the re-attached watch started the download again")
	}
}

func TestWatchIgnoresHeartbeatDetailsOfAnotherJob(t *testing.T) {
	agent := newFakeAgent(t, "node-2", "pool-1")
	agent.script = []agentclient.Download{{ID: "img-1", State: agentclient.StateCompleted, BytesDone: 10, Path: "/p/x", Checksum: sum256}}
	b := newBench(t, false, agent)
	since := time.Now().Add(-time.Hour)
	b.env.SetHeartbeatDetails(activities.WatchDetails{NodeID: "node-1", DownloadID: "img-1", UnreachableSince: &since})
	fin, err := b.watch(job("node-2", false))
	if err != nil || fin.NodeID != "node-2" {
		t.Fatalf("watch = %+v, %v; want node-2's completed job", fin, err)
	}
}

func TestWatchFailsOverWhenTheNodeStaysUnreachable(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	agent.script = []agentclient.Download{running(100, 1000)}
	b := newBench(t, false, agent)
	go func() {
		<-agent.polled // the watch has seen the job running
		agent.set(func(f *fakeAgent) { f.down = true })
	}()
	start := time.Now()
	_, err := b.watch(job("node-1", false))
	typ, nonRetryable := errorType(t, err)
	if typ != activities.FailoverError || !nonRetryable || !strings.Contains(err.Error(), "node-1 unreachable") {
		t.Fatalf("error = %v", err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("failed over after %s, before the 2s grace period", took)
	}
	if img, _ := b.store.Image(context.Background(), "img-1"); img.BytesDone != 100 {
		t.Fatalf("bytes done %d, want the 100 the watch saw before the node went away", img.BytesDone)
	}
}

func TestWatchTurnsNodeErrorsIntoFailoverOrFailure(t *testing.T) {
	cases := []struct {
		name     string
		err      *fault.Error
		shared   bool
		wantType string
	}{
		{"retryable upstream error fails over", fault.Retryable(fault.UpstreamError, "mirror answered 500"), false, activities.FailoverError},
		{"checksum mismatch fails", fault.New(fault.ChecksumMismatch, "got sha256:bb"), false, fault.ChecksumMismatch},
		{"upstream not found fails", fault.New(fault.UpstreamNotFound, "404"), false, fault.UpstreamNotFound},
		{"not a disk image fails", fault.New(fault.NotADiskImage, "HTML"), false, fault.NotADiskImage},
		{"disk full on a local pool fails over", fault.Retryable(fault.DiskFull, "no space"), false, activities.FailoverError},
		{"disk full on a shared pool fails", fault.Retryable(fault.DiskFull, "no space"), true, fault.DiskFull},
		{"non-retryable disk full on a shared pool fails", fault.New(fault.DiskFull, "no space"), true, fault.DiskFull},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			agent := newFakeAgent(t, "node-1", "pool-1")
			agent.script = []agentclient.Download{{ID: "img-1", State: agentclient.StateFailed, Error: c.err}}
			b := newBench(t, c.shared, agent)
			_, err := b.watch(job("node-1", c.shared))
			typ, nonRetryable := errorType(t, err)
			if typ != c.wantType || !nonRetryable {
				t.Fatalf("error = %v (type %s), want non-retryable %s", err, typ, c.wantType)
			}
		})
	}
}

func TestWatchFailsOverWhenTheNodeLostTheJob(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1") // no script: 404
	b := newBench(t, false, agent)
	_, err := b.watch(job("node-1", false))
	if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "no longer knows") {
		t.Fatalf("error = %v", err)
	}
}

// Converting is a live state of the node's job: the watch follows it to
// completion, signals it (the workflow records CONVERTING from that), and
// keeps writing the progress of the CONVERTING image.
func TestWatchFollowsAConvertingJob(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	agent.script = []agentclient.Download{
		{ID: "img-1", State: agentclient.StateVerifying, BytesDone: 1000, BytesTotal: 1000},
		{ID: "img-1", State: agentclient.StateConverting, BytesDone: 400, BytesTotal: 1000},
		{ID: "img-1", State: agentclient.StateConverting, BytesDone: 700, BytesTotal: 1000},
		{ID: "img-1", State: agentclient.StateCompleted, BytesDone: 1000, BytesTotal: 1000, Path: "/p/cloud-images/x.raw", Checksum: sum256,
			Format: "raw", VirtualSizeBytes: 1 << 30, Compression: "none", FileChecksum: fileSum256}}
	b := newBench(t, false, agent)
	ctx := context.Background()
	for _, tr := range []store.Transition{store.ToDownloading{NodeID: "node-1", Attempt: 1}, store.ToConverting{NodeID: "node-1"}} {
		if err := b.store.Transition(ctx, "img-1", tr); err != nil {
			t.Fatal(err)
		}
	}
	j := job("node-1", false)
	j.ImageFormat, j.NodeConverts = "raw", true
	fin, err := b.watch(j)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Path != "/p/cloud-images/x.raw" || fin.Format != "raw" {
		t.Fatalf("finished = %+v", fin)
	}
	var states []string
	for _, u := range b.signals.got {
		states = append(states, u.State)
	}
	// The end is not signalled nor written: the workflow's MarkReady
	// records it right after, and a signal first would only delay it.
	if got := strings.Join(states, ","); !strings.Contains(got, "verifying,converting") || strings.Contains(got, "completed") {
		t.Fatalf("signalled states %q, want verifying, then converting, and not completed", got)
	}
	img, err := b.store.Image(ctx, "img-1")
	if err != nil || img.Status != store.StatusConverting || (img.BytesDone != 400 && img.BytesDone != 700) {
		t.Fatalf("image %s at %d bytes (%v), want CONVERTING with the watch's progress of the conversion (400 or 700)", img.Status, img.BytesDone, err)
	}
}
