package workflows

import (
	"fmt"
	"sort"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/workflows/contract"
)

// DistributeImageWorkflow puts one image onto many pools, fetching it from
// the mirror once:
//  1. plan: one copy per pool (all_pools resolved now); a pool that has a
//     live or READY image of the source already is adopted (waited for),
//     not copied again;
//  2. the first copy comes from the mirror (unless an adopted one, or the
//     image distributed, will do);
//  3. each READY copy becomes a source: every later copy reads from one,
//     at most MaxParallel at a time from each, so the copies can double
//     each round;
//  4. each copy is a child DownloadImageWorkflow, which moves to another
//     READY copy (or the mirror) when its source dies mid-copy;
//  5. a distribution of an image (an upload) has no mirror: the image is
//     the first source, and a copy none of whose sources can be read fails;
//  6. it ends READY, or PARTIAL naming the pools whose copy failed
//     (FAILED when none was made: at once, the other copies not tried,
//     when the mirror copy failed because of the source), or CANCELLED:
//     cancelled, it cancels the copies in flight and keeps the finished ones.
func DistributeImageWorkflow(ctx workflow.Context, in DistributeInput) (DistributeResult, error) {
	r := newDistribution(ctx, in)
	if err := workflow.UpsertTypedSearchAttributes(ctx, DistributionIDKey.ValueSet(in.DistributionID)); err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "distribution_id", in.DistributionID, "error", err)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, localOptions)
	if err := workflow.ExecuteLocalActivity(lctx, a.PlanDistribution, in.DistributionID).Get(ctx, &r.plan); err != nil {
		code, msg := failure(err)
		r.finish(ctx, contract.DistributionFailed, msg)
		return r.result(contract.DistributionFailed), temporal.NewNonRetryableApplicationError(msg, code, nil)
	}
	r.run(ctx)
	if ctx.Err() != nil {
		r.cancelled(ctx)
		return r.result(contract.DistributionCancelled), temporal.NewCanceledError("distribution cancelled")
	}
	status, msg := r.outcome()
	r.finish(ctx, status, msg)
	if status == contract.DistributionFailed {
		return r.result(status), temporal.NewNonRetryableApplicationError(msg, r.code, nil)
	}
	return r.result(status), nil
}

// distribution is the state of one run of DistributeImageWorkflow.
type distribution struct {
	in       DistributeInput
	plan     activities.DistributionPlan
	checksum string // the source checksum the READY copies were verified against
	pending  []activities.PlannedCopy
	sources  []string          // READY copies (image ids), the oldest first
	nodeOf   map[string]string // the node of each source, when known
	load     map[string]int    // copies in flight reading from each source
	// mirror counts copies in flight from the mirror; waiting, adopted ones
	// that are not READY yet.
	mirror  int
	waiting int
	running int
	ready   map[string]bool // pools with a READY copy
	failed  []string        // pools whose copy failed
	code    string          // the first failure's contract code
	// sourceMsg says why the distribution ended early: the copy from the
	// mirror failed because of the source (sourceFailed).
	sourceMsg string
	sel       workflow.Selector
	// rctx records copies: disconnected, so that a copy that ends after a
	// cancel is still recorded as it ended.
	rctx workflow.Context
}

func newDistribution(ctx workflow.Context, in DistributeInput) *distribution {
	if in.MaxParallel < 1 {
		in.MaxParallel = DefaultMaxParallel
	}
	rctx, _ := workflow.NewDisconnectedContext(ctx)
	r := &distribution{in: in, load: map[string]int{}, nodeOf: map[string]string{}, ready: map[string]bool{}, sel: workflow.NewSelector(ctx), rctx: rctx}
	// A cancel wakes the loop (once), which then waits for the copies to stop.
	wake := workflow.NewBufferedChannel(rctx, 1)
	workflow.Go(ctx, func(gctx workflow.Context) {
		gctx.Done().Receive(gctx, nil)
		wake.SendAsync(true)
	})
	r.sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) { c.ReceiveAsync(nil) })
	return r
}

func (r *distribution) run(ctx workflow.Context) {
	r.checksum = r.plan.Checksum
	for _, pc := range r.plan.Copies {
		switch {
		case pc.Status == imagestate.Failed:
			r.fail(pc.PoolID, pc.Code)
		case pc.Status == imagestate.Ready:
			r.addSource(pc)
		case pc.New:
			r.pending = append(r.pending, pc)
		default:
			r.wait(ctx, pc)
		}
	}
	if id := r.plan.SourceImageID; id != "" && !contains(r.sources, id) {
		// A distribution of an image: the image is the first source even
		// when its pool is not a target (it is then no copy of its own).
		r.sources = append(r.sources, id)
		r.nodeOf[id] = r.plan.SourceNodeID
	}
	for {
		r.schedule(ctx)
		if r.running+r.waiting == 0 {
			return
		}
		r.sel.Select(ctx)
		if ctx.Err() != nil {
			r.drain(ctx)
			return
		}
	}
}

// schedule starts the copies it may: from the mirror while no copy is
// READY (one at a time, and not while an adopted copy may become the first
// source), then from the least loaded sources, MaxParallel each.
func (r *distribution) schedule(ctx workflow.Context) {
	for len(r.pending) > 0 {
		if len(r.sources) == 0 {
			if r.mirror > 0 || r.waiting > 0 {
				return
			}
			r.start(ctx, r.next(), "")
			continue
		}
		src := r.leastLoaded()
		if r.load[src] >= r.in.MaxParallel {
			return
		}
		r.start(ctx, r.next(), src)
	}
}

func (r *distribution) next() activities.PlannedCopy {
	pc := r.pending[0]
	r.pending = r.pending[1:]
	return pc
}

func (r *distribution) leastLoaded() string {
	best := r.sources[0]
	for _, s := range r.sources[1:] {
		if r.load[s] < r.load[best] {
			best = s
		}
	}
	return best
}

// start runs a copy as a child DownloadImageWorkflow under its image's
// workflow id: from src, then from the other sources in order of load,
// or from the mirror when src is "".
func (r *distribution) start(ctx workflow.Context, pc activities.PlannedCopy, src string) {
	var peers []string
	if src != "" {
		peers = append(peers, src)
		others := make([]string, 0, len(r.sources))
		for _, s := range r.sources {
			if s != src {
				others = append(others, s)
			}
		}
		sort.SliceStable(others, func(i, j int) bool { return r.load[others[i]] < r.load[others[j]] })
		peers = append(peers, others...)
		r.load[src]++
	} else {
		r.mirror++
	}
	r.running++
	from := "the mirror"
	if src != "" {
		from = "copy " + src
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:          WorkflowID(pc.ImageID),
		TaskQueue:           TaskQueue,
		WaitForCancellation: true,
		ParentClosePolicy:   enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(DistributionIDKey.ValueSet(r.in.DistributionID),
			ImageIDKey.ValueSet(pc.ImageID), PoolIDKey.ValueSet(pc.PoolID), ImageStatusKey.ValueSet(imagestate.Pending)),
		StaticSummary: fmt.Sprintf("distribution %s: copy into pool %s from %s", r.in.DistributionID, pc.PoolID, from),
	})
	in := Input{ImageID: pc.ImageID, CatalogID: r.plan.CatalogID, URL: r.plan.URL, Name: r.plan.Name, Checksum: r.checksum,
		PoolID: pc.PoolID, Peers: peers, DistributionID: r.in.DistributionID, SourceImageID: r.plan.SourceImageID}
	if r.plan.CatalogID != "" {
		in.URL = ""
	}
	r.record(ctx, activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Downloading, Source: copySource(r.nodeOf[src])})
	f := workflow.ExecuteChildWorkflow(cctx, WorkflowType, in)
	r.sel.AddFuture(f, func(f workflow.Future) {
		r.running--
		if src != "" {
			r.load[src]--
		} else {
			r.mirror--
		}
		var res Result
		err := f.Get(ctx, &res)
		if err != nil && temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			// The image's download runs apart from the distribution (the
			// API started it): wait for it like an adopted copy.
			pc.Adopted = true
			r.wait(ctx, pc)
			return
		}
		r.copied(ctx, pc, res, err)
		if src == "" {
			r.sourceFailed(ctx, pc, err)
		}
	})
}

// sourceFault are the codes of a copy's failure that are about the source
// (its URL, checksum, signature or bytes), not the target pool: every other
// copy from the mirror would fail the same way. disk_full, no_node_available,
// node_unreachable, too_large (a node's cap) and upstream_error (a node's
// network, DNS or proxy, or a mirror's passing trouble) are not among them.
var sourceFault = map[string]string{
	fault.ChecksumUnavailable: "check that the workers and nodes can reach the mirror (internet access, proxy), or pin a checksum in the catalog entry",
	fault.UpstreamNotFound:    "check the URL (and credential) of the catalog entry or request",
	fault.URLForbidden:        "check the URL against the URL policy",
	fault.SignatureInvalid:    "check the catalog entry's signature and key",
	fault.ChecksumMismatch:    "check the catalog entry's checksum and the mirror (or a proxy between)",
	fault.NotADiskImage:       "check the URL: the mirror does not serve a disk image there",
	fault.UnsafeImage:         "use the vendor's self-contained image",
	fault.FormatMismatch:      "check the URL and the declared format",
}

// sourceFailsAll versions the early end of a distribution whose mirror
// copy failed because of the source: older runs went on to the next pool.
const sourceFailsAll = "distribute-source-failure-ends"

// sourceFailed ends the distribution when the copy into pc's pool from the
// mirror failed because of the source while no copy is READY (or may become
// READY): the planned copies left would each read the same mirror and fail
// alike, one after another. They are not started, and are recorded FAILED.
func (r *distribution) sourceFailed(ctx workflow.Context, pc activities.PlannedCopy, err error) {
	if err == nil || ctx.Err() != nil || len(r.sources) > 0 || r.waiting > 0 || len(r.pending) == 0 {
		return
	}
	code, msg := failure(err)
	hint, ok := sourceFault[code]
	if !ok || workflow.GetVersion(ctx, sourceFailsAll, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	r.code = code // why the distribution ended, even after an earlier target failure
	r.sourceMsg = fmt.Sprintf("the copy into pool %s from the mirror failed with %s (%s); the other pools were not tried, as they read the same source: %s, then post the distribution again",
		pc.PoolID, code, msg, hint)
	note := fmt.Sprintf("not tried: the source failed (the copy into pool %s from the mirror ended %s: %s)", pc.PoolID, code, msg)
	for _, p := range r.pending {
		r.fail(p.PoolID, code)
		r.record(ctx, activities.CopyRecord{PoolID: p.PoolID, ImageID: p.ImageID, Status: imagestate.Failed, Code: code, Message: note})
	}
	r.pending = nil
}

// copied records a finished copy: READY, it becomes a source.
func (r *distribution) copied(ctx workflow.Context, pc activities.PlannedCopy, res Result, err error) {
	if err != nil {
		if ctx.Err() != nil && temporal.IsCanceledError(err) {
			return // cancelled: recorded once every copy has stopped
		}
		code, msg := failure(err)
		r.fail(pc.PoolID, code)
		r.record(ctx, activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Failed, Code: code, Message: msg, Adopted: pc.Adopted})
		return
	}
	rec := activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Ready, Adopted: pc.Adopted,
		Source: copySource(res.SourceNodeID)}
	if res.SourceNodeID != "" {
		rec.BytesFromPeers = res.SizeBytes
	} else {
		rec.BytesFromMirror = res.SizeBytes
	}
	r.record(ctx, rec)
	if r.checksum == "" {
		r.checksum = res.Checksum
	}
	pc.NodeID = res.NodeID
	r.addSource(pc)
}

// wait waits for an adopted copy: a download of the source into the pool
// that the distribution did not start.
func (r *distribution) wait(ctx workflow.Context, pc activities.PlannedCopy) {
	r.waiting++
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, waitOptions), a.WaitForImage, pc.ImageID)
	r.sel.AddFuture(f, func(f workflow.Future) {
		r.waiting--
		var status string
		err := f.Get(ctx, &status)
		if ctx.Err() != nil && temporal.IsCanceledError(err) {
			return
		}
		if err == nil && status != imagestate.Ready {
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("the adopted download of pool %s ended %s", pc.PoolID, status), fault.Internal, nil)
		}
		if err != nil {
			code, msg := failure(err)
			r.fail(pc.PoolID, code)
			r.record(ctx, activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Failed, Adopted: true, Code: code, Message: msg})
			return
		}
		r.record(ctx, activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Ready, Adopted: true})
		r.addSource(pc)
	})
}

func (r *distribution) addSource(pc activities.PlannedCopy) {
	r.ready[pc.PoolID] = true
	r.sources = append(r.sources, pc.ImageID)
	if pc.NodeID != "" {
		r.nodeOf[pc.ImageID] = pc.NodeID
	}
	if r.checksum == "" {
		r.checksum = pc.Checksum
	}
}

func (r *distribution) fail(poolID, code string) {
	r.failed = append(r.failed, poolID)
	if r.code == "" {
		r.code = code
	}
}

// drain waits, once the distribution is cancelled, for the copies in
// flight to stop: each child cancels its node-side job and marks its image
// CANCELLED (WaitForCancellation) before the distribution records its end.
func (r *distribution) drain(ctx workflow.Context) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	for r.running+r.waiting > 0 {
		r.sel.Select(dctx) // ctx.Done() is ready now: each turn ends at most one copy
	}
}

// cancelled records the copies that did not finish as CANCELLED and the
// distribution as CANCELLED; READY copies stay.
func (r *distribution) cancelled(ctx workflow.Context) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	for _, pc := range r.plan.Copies {
		if r.ready[pc.PoolID] || pc.Status == imagestate.Failed || contains(r.failed, pc.PoolID) {
			continue
		}
		r.record(dctx, activities.CopyRecord{PoolID: pc.PoolID, ImageID: pc.ImageID, Status: imagestate.Cancelled, Adopted: pc.Adopted || !pc.New,
			Code: fault.Cancelled, Message: "the distribution was cancelled"})
	}
	r.finish(dctx, contract.DistributionCancelled, "cancelled")
}

// outcome is how the distribution ended and what it says about it.
func (r *distribution) outcome() (status, msg string) {
	switch {
	case len(r.failed) == 0:
		return contract.DistributionReady, ""
	case len(r.ready) == 0 && r.sourceMsg != "":
		return contract.DistributionFailed, r.sourceMsg
	case len(r.ready) == 0:
		return contract.DistributionFailed, fmt.Sprintf("no copy was made; failed pools: %s", strings.Join(r.failed, ", "))
	}
	return contract.DistributionPartial, fmt.Sprintf("the copies into %s failed (see each copy's error); post the distribution again to retry them",
		strings.Join(r.failed, ", "))
}

func (r *distribution) result(status string) DistributeResult {
	return DistributeResult{DistributionID: r.in.DistributionID, Status: status, FailedPools: r.failed}
}

// record writes one copy's state; a failure to write is logged, not fatal:
// the copy itself happened, and its image record says so.
func (r *distribution) record(ctx workflow.Context, rec activities.CopyRecord) {
	rec.DistributionID = r.in.DistributionID
	lctx := workflow.WithLocalActivityOptions(r.rctx, localOptions)
	if err := workflow.ExecuteLocalActivity(lctx, a.RecordCopy, rec).Get(r.rctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("record a copy", "distribution_id", r.in.DistributionID, "pool_id", rec.PoolID, "error", err)
	}
}

func (r *distribution) finish(ctx workflow.Context, status, msg string) {
	lctx := workflow.WithLocalActivityOptions(ctx, localOptions)
	end := activities.DistributionEnd{DistributionID: r.in.DistributionID, Status: status, Message: msg}
	if err := workflow.ExecuteLocalActivity(lctx, a.EndDistribution, end).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("record the distribution's end", "distribution_id", r.in.DistributionID, "status", status, "error", err)
	}
}

// copySource is a copy's Source: "mirror", or "node:ID" for a copy read
// from a node's READY copy.
func copySource(nodeID string) string {
	if nodeID == "" {
		return contract.CopySourceMirror
	}
	return contract.CopySourceNode(nodeID)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
