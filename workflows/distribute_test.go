package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/workflows"
)

const distID = "dist-1"

// copyTime is how long each mocked copy takes: the rounds show in the
// workflow's clock.
const copyTime = time.Minute

// fakeCopies stands in for the child downloads: each takes copyTime of
// workflow time, and it tracks how many read from each source at once.
type fakeCopies struct {
	t        *testing.T
	fail     map[string]error // pool → the error its copy ends with
	started  []workflows.Input
	reading  map[string]int // source image id ("" the mirror) → copies reading it now
	maxRead  map[string]int
	finished map[string]time.Duration // pool → when its copy ended, from the start
	begin    time.Time
}

func newFakeCopies(t *testing.T) *fakeCopies {
	return &fakeCopies{t: t, fail: map[string]error{}, reading: map[string]int{}, maxRead: map[string]int{}, finished: map[string]time.Duration{}}
}

func (f *fakeCopies) copy(ctx workflow.Context, in workflows.Input) (workflows.Result, error) {
	if f.begin.IsZero() {
		f.begin = workflow.Now(ctx)
	}
	f.started = append(f.started, in)
	src := ""
	if len(in.Peers) > 0 {
		src = in.Peers[0]
	}
	f.reading[src]++
	f.maxRead[src] = max(f.maxRead[src], f.reading[src])
	err := workflow.Sleep(ctx, copyTime)
	f.reading[src]--
	if err != nil {
		return workflows.Result{}, err
	}
	f.finished[in.PoolID] = workflow.Now(ctx).Sub(f.begin)
	if e := f.fail[in.PoolID]; e != nil {
		return workflows.Result{}, e
	}
	res := workflows.Result{ImageID: in.ImageID, NodeID: "node-" + in.PoolID, SizeBytes: 1000, Checksum: "sha256:aa"}
	if src != "" {
		res.SourceNodeID = "node-" + strings.TrimPrefix(src, "img-")
	}
	return res, nil
}

func (f *fakeCopies) fromMirror() []string {
	var pools []string
	for _, in := range f.started {
		if len(in.Peers) == 0 {
			pools = append(pools, in.PoolID)
		}
	}
	return pools
}

type distEnv struct {
	env    *testsuite.TestWorkflowEnvironment
	copies *fakeCopies
	// records are the copies' records, in order; ends the distribution's.
	records []activities.CopyRecord
	ends    []activities.DistributionEnd
}

func newDistEnv(t *testing.T, plan activities.DistributionPlan) *distEnv {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.DistributeImageWorkflow, workflow.RegisterOptions{Name: workflows.DistributeWorkflowType})
	d := &distEnv{env: env, copies: newFakeCopies(t)}
	// The copies are child workflows of their own (not mocks), so that a
	// cancel reaches them as it would a DownloadImageWorkflow.
	env.RegisterWorkflowWithOptions(d.copies.copy, workflow.RegisterOptions{Name: workflows.WorkflowType})
	env.RegisterActivity(a)
	env.SetTestTimeout(time.Minute)
	env.OnActivity(a.PlanDistribution, mock.Anything, distID).Return(plan, nil).Once()
	env.OnActivity(a.RecordCopy, mock.Anything, mock.Anything).Return(func(_ context.Context, rec activities.CopyRecord) error {
		d.records = append(d.records, rec)
		return nil
	})
	env.OnActivity(a.EndDistribution, mock.Anything, mock.Anything).Return(func(_ context.Context, end activities.DistributionEnd) error {
		d.ends = append(d.ends, end)
		return nil
	})
	return d
}

func (d *distEnv) run(t *testing.T, maxParallel int) (workflows.DistributeResult, error) {
	t.Helper()
	d.env.ExecuteWorkflow(workflows.DistributeWorkflowType, workflows.DistributeInput{DistributionID: distID, MaxParallel: maxParallel})
	if !d.env.IsWorkflowCompleted() {
		t.Fatal("the distribution did not complete")
	}
	var res workflows.DistributeResult
	err := d.env.GetWorkflowError()
	if err == nil {
		if gerr := d.env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, err
}

// final is the last record of each pool's copy.
func (d *distEnv) final() map[string]activities.CopyRecord {
	out := map[string]activities.CopyRecord{}
	for _, r := range d.records {
		out[r.PoolID] = r
	}
	return out
}

func newPlan(pools int) activities.DistributionPlan {
	return withCopies(activities.DistributionPlan{DistributionID: distID, URL: "https://mirror.example/x.qcow2", Name: "x", Checksum: "sha256:aa"}, pools)
}

// withCopies is plan p with PENDING copies into new pools p1..pN.
func withCopies(p activities.DistributionPlan, pools int) activities.DistributionPlan {
	for i := 1; i <= pools; i++ {
		id := fmt.Sprintf("p%d", i)
		p.Copies = append(p.Copies, activities.PlannedCopy{PoolID: id, ImageID: "img-" + id, Status: imagestate.Pending, New: true})
	}
	return p
}

// TestDistributeReadsTheMirrorOnceAndDoublesTheCopiesEachRound: with one
// copy reading a source at a time, 8 pools take log2(8)+1 = 4 rounds: 1
// from the mirror, then 1, 2 and 4 from the READY copies.
func TestDistributeReadsTheMirrorOnceAndDoublesTheCopiesEachRound(t *testing.T) {
	d := newDistEnv(t, newPlan(8))
	res, err := d.run(t, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "READY" || len(res.FailedPools) != 0 {
		t.Fatalf("result %+v, want READY", res)
	}
	if m := d.copies.fromMirror(); len(m) != 1 {
		t.Fatalf("copies from the mirror: %v, want exactly one", m)
	}
	if len(d.copies.started) != 8 {
		t.Fatalf("%d copies started, want 8", len(d.copies.started))
	}
	for src, n := range d.copies.maxRead {
		if n > 1 {
			t.Errorf("%d copies read %q at once, want at most max_parallel 1", n, src)
		}
	}
	var last time.Duration
	rounds := map[time.Duration]int{}
	for _, at := range d.copies.finished {
		last = max(last, at)
		rounds[at]++
	}
	if last != 4*copyTime || rounds[copyTime] != 1 || rounds[2*copyTime] != 1 || rounds[3*copyTime] != 2 || rounds[4*copyTime] != 4 {
		t.Fatalf("copies finished per round %v (last at %s), want 1, 1, 2, 4 over 4 rounds", rounds, last)
	}
	fin := d.final()
	mirror, peers := 0, 0
	for pool, r := range fin {
		if r.Status != imagestate.Ready {
			t.Errorf("pool %s: copy %s, want READY", pool, r.Status)
		}
		switch {
		case r.Source == "mirror" && r.BytesFromMirror == 1000:
			mirror++
		case strings.HasPrefix(r.Source, "node:node-p") && r.BytesFromPeers == 1000:
			peers++
		default:
			t.Errorf("pool %s: source %q, bytes %d from the mirror and %d from peers", pool, r.Source, r.BytesFromMirror, r.BytesFromPeers)
		}
	}
	if mirror != 1 || peers != 7 {
		t.Fatalf("%d copies from the mirror and %d from peers, want 1 and 7", mirror, peers)
	}
	if len(d.ends) != 1 || d.ends[0].Status != "READY" {
		t.Fatalf("ends recorded %+v, want one READY", d.ends)
	}
	// Every later copy names the other READY copies after its source, for
	// when that one dies mid-copy.
	for _, in := range d.copies.started[1:] {
		if in.Peers[0] == "" || in.DistributionID != distID || in.Checksum != "sha256:aa" {
			t.Fatalf("copy input %+v: want peers, the distribution and the checksum", in)
		}
	}
	// The last copy starts in round 4, when the 2 copies of round 3 end
	// at one instant: it may start between the two ends, so it sees 3 or
	// 4 READY copies (it was 4 at least, and failed about 1 run in 10).
	if last := d.copies.started[7]; len(last.Peers) < 3 {
		t.Fatalf("the last copy names peers %v, want every READY copy (3 at least)", last.Peers)
	}
}

// TestDistributeKeepsMaxParallelCopiesPerSource: with max_parallel 3, one
// source serves three copies at once and never more.
func TestDistributeKeepsMaxParallelCopiesPerSource(t *testing.T) {
	d := newDistEnv(t, newPlan(8))
	if _, err := d.run(t, 3); err != nil {
		t.Fatal(err)
	}
	if m := d.copies.fromMirror(); len(m) != 1 {
		t.Fatalf("copies from the mirror: %v, want one", m)
	}
	if got := d.copies.maxRead["img-p1"]; got != 3 {
		t.Fatalf("the first copy served %d copies at once, want max_parallel 3", got)
	}
	for src, n := range d.copies.maxRead {
		if n > 3 {
			t.Errorf("%d copies read %q at once, want at most 3", n, src)
		}
	}
	// 1 from the mirror, 3 from p1, then 4 from four sources: 3 rounds.
	var last time.Duration
	for _, at := range d.copies.finished {
		last = max(last, at)
	}
	if last != 3*copyTime {
		t.Fatalf("the last copy ended at %s, want after 3 rounds", last)
	}
}

// TestDistributeAdoptsImagesThePoolsHave: a READY image is a source from
// the start, so nothing is read from the mirror; a live one is waited for,
// not copied.
func TestDistributeAdoptsImagesThePoolsHave(t *testing.T) {
	plan := newPlan(3)
	plan.Copies[0] = activities.PlannedCopy{PoolID: "p1", ImageID: "old-1", Status: imagestate.Ready, Adopted: true, NodeID: "node-x", Checksum: "sha256:aa"}
	plan.Copies[1] = activities.PlannedCopy{PoolID: "p2", ImageID: "live-2", Status: imagestate.Downloading, Adopted: true}
	d := newDistEnv(t, plan)
	d.env.OnActivity(a.WaitForImage, mock.Anything, "live-2").Return(imagestate.Ready, nil).Once()
	res, err := d.run(t, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "READY" {
		t.Fatalf("status %s, want READY", res.Status)
	}
	if len(d.copies.started) != 1 || d.copies.started[0].PoolID != "p3" || d.copies.started[0].Peers[0] != "old-1" {
		t.Fatalf("copies started %+v, want only p3, from the adopted READY image", d.copies.started)
	}
	fin := d.final()
	if r := fin["p2"]; r.Status != imagestate.Ready || !r.Adopted {
		t.Fatalf("p2's record %+v, want READY and adopted", r)
	}
	// The fake names the source node after the image it read.
	if r := fin["p3"]; r.Status != imagestate.Ready || r.Source != "node:node-old-1" || r.BytesFromPeers != 1000 {
		t.Fatalf("p3's record %+v, want READY from the adopted copy's node", r)
	}
	d.env.AssertExpectations(t)
}

// TestDistributeEndsPartialNamingTheFailedPools: a target whose disk is
// full fails its copy with disk_full; the others go on, and the
// distribution is PARTIAL and says which pool.
func TestDistributeEndsPartialNamingTheFailedPools(t *testing.T) {
	d := newDistEnv(t, newPlan(4))
	d.copies.fail["p3"] = temporal.NewNonRetryableApplicationError("pool p3 has no room", fault.DiskFull, nil)
	res, err := d.run(t, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "PARTIAL" || !slices.Equal(res.FailedPools, []string{"p3"}) {
		t.Fatalf("result %+v, want PARTIAL with p3", res)
	}
	if r := d.final()["p3"]; r.Status != imagestate.Failed || r.Code != fault.DiskFull {
		t.Fatalf("p3's record %+v, want FAILED disk_full", r)
	}
	if len(d.ends) != 1 || d.ends[0].Status != "PARTIAL" || !strings.Contains(d.ends[0].Message, "p3") {
		t.Fatalf("end %+v, want PARTIAL naming p3", d.ends)
	}
}

// TestDistributeEndsAtOnceWhenTheSourceFails: with no internet, the copy
// from the mirror fails with checksum_unavailable; every other pool would
// read the same mirror, so none is started: each is recorded FAILED with
// that code, and the distribution ends FAILED saying what to check.
func TestDistributeEndsAtOnceWhenTheSourceFails(t *testing.T) {
	d := newDistEnv(t, newPlan(5))
	for i := 1; i <= 5; i++ {
		d.copies.fail[fmt.Sprintf("p%d", i)] = temporal.NewNonRetryableApplicationError("checksum file unreachable", fault.ChecksumUnavailable, nil)
	}
	_, err := d.run(t, 4)
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.Type() != fault.ChecksumUnavailable {
		t.Fatalf("error %v, want the source's checksum_unavailable", err)
	}
	if len(d.copies.started) != 1 || d.copies.started[0].PoolID != "p1" {
		t.Fatalf("copies started %+v, want only p1's, from the mirror", d.copies.started)
	}
	for _, r := range d.records {
		if r.PoolID != "p1" && r.Status != imagestate.Failed {
			t.Errorf("pool %s recorded %s: a copy that was not tried must not show as started", r.PoolID, r.Status)
		}
	}
	fin := d.final()
	if r := fin["p1"]; r.Status != imagestate.Failed || r.Code != fault.ChecksumUnavailable || r.Message != "checksum file unreachable" {
		t.Fatalf("p1's record %+v, want FAILED with the copy's own error", r)
	}
	for _, p := range []string{"p2", "p3", "p4", "p5"} {
		r := fin[p]
		if r.Status != imagestate.Failed || r.Code != fault.ChecksumUnavailable || !strings.Contains(r.Message, "not tried") || !strings.Contains(r.Message, "pool p1") {
			t.Errorf("%s's record %+v, want FAILED checksum_unavailable, not tried because p1's source failed", p, r)
		}
	}
	if len(d.ends) != 1 || d.ends[0].Status != "FAILED" || !strings.Contains(d.ends[0].Message, fault.ChecksumUnavailable) ||
		!strings.Contains(d.ends[0].Message, "internet access") || !strings.Contains(d.ends[0].Message, "post the distribution again") {
		t.Fatalf("end %+v, want FAILED naming checksum_unavailable and what to check", d.ends)
	}
}

// TestDistributeGoesOnAfterATargetFailure: the mirror copy fails because
// its pool is full (the target's fault): the next pool is tried from the
// mirror, and the rest from its copy. A source error once a copy is READY
// (a peer copy's checksum_mismatch) fails that pool only.
func TestDistributeGoesOnAfterATargetFailure(t *testing.T) {
	d := newDistEnv(t, newPlan(5))
	d.copies.fail["p1"] = temporal.NewNonRetryableApplicationError("pool p1 has no room", fault.DiskFull, nil)
	d.copies.fail["p3"] = temporal.NewNonRetryableApplicationError("bytes differ", fault.ChecksumMismatch, nil)
	res, err := d.run(t, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "PARTIAL" || !slices.Equal(res.FailedPools, []string{"p1", "p3"}) {
		t.Fatalf("result %+v, want PARTIAL with p1 and p3", res)
	}
	if m := d.copies.fromMirror(); !slices.Equal(m, []string{"p1", "p2"}) {
		t.Fatalf("copies from the mirror %v, want p1's (disk full) then p2's", m)
	}
	if len(d.copies.started) != 5 {
		t.Fatalf("%d copies started, want all 5", len(d.copies.started))
	}
	fin := d.final()
	for p, code := range map[string]string{"p1": fault.DiskFull, "p3": fault.ChecksumMismatch} {
		if r := fin[p]; r.Status != imagestate.Failed || r.Code != code || strings.Contains(r.Message, "not tried") {
			t.Errorf("%s's record %+v, want FAILED %s from its own copy", p, r, code)
		}
	}
}

// TestDistributeOlderRunsTryEachPoolFromTheMirror: a run from before the
// early end (its history has no version marker) goes on as it did: each
// pool tried from the mirror in turn, so its replay still matches.
func TestDistributeOlderRunsTryEachPoolFromTheMirror(t *testing.T) {
	d := newDistEnv(t, newPlan(2))
	d.env.OnGetVersion("distribute-source-failure-ends", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	for _, p := range []string{"p1", "p2"} {
		d.copies.fail[p] = temporal.NewNonRetryableApplicationError("no such file", fault.UpstreamNotFound, nil)
	}
	_, err := d.run(t, 4)
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.Type() != fault.UpstreamNotFound {
		t.Fatalf("error %v, want the copies' upstream_not_found", err)
	}
	if m := d.copies.fromMirror(); len(m) != 2 {
		t.Fatalf("copies from the mirror %v, want each pool tried once", m)
	}
	if len(d.ends) != 1 || d.ends[0].Status != "FAILED" || !strings.Contains(d.ends[0].Message, "no copy was made") {
		t.Fatalf("end %+v, want FAILED as before", d.ends)
	}
}

// TestDistributeCancelledCancelsCopiesInFlightAndKeepsFinishedOnes.
func TestDistributeCancelledCancelsCopiesInFlightAndKeepsFinishedOnes(t *testing.T) {
	d := newDistEnv(t, newPlan(4))
	// After the first round (the mirror copy) and half the second.
	d.env.RegisterDelayedCallback(d.env.CancelWorkflow, copyTime+copyTime/2)
	_, err := d.run(t, 4)
	if !temporal.IsCanceledError(err) {
		t.Fatalf("error %v, want cancelled", err)
	}
	fin := d.final()
	if r := fin["p1"]; r.Status != imagestate.Ready {
		t.Fatalf("p1 (finished before the cancel) ends %+v, want READY kept", r)
	}
	for _, p := range []string{"p2", "p3", "p4"} {
		if r := fin[p]; r.Status != imagestate.Cancelled {
			t.Errorf("%s ends %+v, want CANCELLED", p, r)
		}
	}
	if len(d.copies.finished) != 1 {
		t.Fatalf("copies finished %v, want only p1's: the others were cancelled", d.copies.finished)
	}
	if len(d.ends) != 1 || d.ends[0].Status != "CANCELLED" {
		t.Fatalf("end %+v, want CANCELLED", d.ends)
	}
}

// TestDistributeRetryCopiesOnlyTheFailedPoolFromTheReadyCopies: posted
// again, a PARTIAL distribution's plan has its READY copies and a new
// image for the pool that failed: one copy, from a peer, and no mirror.
func TestDistributeRetryCopiesOnlyTheFailedPoolFromTheReadyCopies(t *testing.T) {
	plan := newPlan(3)
	plan.Copies[0] = activities.PlannedCopy{PoolID: "p1", ImageID: "img-p1", Status: imagestate.Ready, NodeID: "node-p1", Checksum: "sha256:aa"}
	plan.Copies[1] = activities.PlannedCopy{PoolID: "p2", ImageID: "img-p2", Status: imagestate.Ready, NodeID: "node-p2", Checksum: "sha256:aa"}
	plan.Copies[2] = activities.PlannedCopy{PoolID: "p3", ImageID: "img-p3-retry", Status: imagestate.Pending, New: true}
	d := newDistEnv(t, plan)
	res, err := d.run(t, 4)
	if err != nil || res.Status != "READY" {
		t.Fatalf("result %+v %v, want READY", res, err)
	}
	if len(d.copies.started) != 1 || d.copies.started[0].ImageID != "img-p3-retry" || len(d.copies.started[0].Peers) != 2 {
		t.Fatalf("copies %+v, want only p3's new image, from both READY copies", d.copies.started)
	}
	if r := d.final()["p3"]; r.Status != imagestate.Ready || r.BytesFromMirror != 0 || r.BytesFromPeers != 1000 {
		t.Fatalf("p3's record %+v, want READY from a peer", r)
	}
}
