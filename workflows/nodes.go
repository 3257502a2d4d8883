package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
)

// pickNode finds a node for the download. When none can take it, it looks
// again with growing waits, up to the plan's NoNodeTimeout, and then fails
// with no_node_available and what to do about it.
func (d *download) pickNode(ctx workflow.Context) (activities.Candidate, error) {
	start := workflow.Now(ctx)
	wait := noNodeFirstWait
	req := activities.PickRequest{PoolID: d.plan.PoolID, PreferredNodeID: d.in.PreferredNodeID, Exclude: d.failed,
		LastResort: d.mayReturn, Upload: d.upload}
	for {
		var pick activities.Pick
		err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, pickOptions), a.PickNode, req).Get(ctx, &pick)
		if err != nil {
			return activities.Candidate{}, err
		}
		if pick.Node != nil {
			d.waitingUntil, d.waitingMessage = nil, ""
			return *pick.Node, nil
		}
		if d.mirrorUnreachable() {
			return activities.Candidate{}, fault.New(fault.UpstreamError, "%s", d.mirrorMessage())
		}
		if d.in.DistributionID != "" && d.poolFull() {
			// A distribution's copy into a pool whose every node was full
			// fails as such at once: the distribution names the pool.
			return activities.Candidate{}, fault.New(fault.DiskFull, "%s", d.fullMessage())
		}
		waited := workflow.Now(ctx).Sub(start)
		left := d.plan.NoNodeTimeout - waited
		if left <= 0 {
			return activities.Candidate{}, fault.New(fault.NoNodeAvailable, "%s", d.noNodeMessage(pick, waited))
		}
		workflow.GetLogger(ctx).Info("no node can take the download yet; waiting", "pool_id", d.plan.PoolID, "wait", min(wait, left))
		if err := d.showNodeWait(ctx, pick, start.Add(d.plan.NoNodeTimeout)); err != nil {
			return activities.Candidate{}, err
		}
		if err := workflow.Sleep(ctx, min(wait, left)); err != nil {
			return activities.Candidate{}, err
		}
		wait = min(2*wait, noNodeMaxWait)
	}
}

// nodeWaitShown is the change that makes a download that has not started
// yet say, while it waits for a node, which pool and why (recorded as a
// wait, like one for a transfer window): a pool's only agent just
// restarted, say, and its node still looks offline.
const nodeWaitShown = "node-wait-shown"

// showNodeWait records, once per wait, that a download not yet started
// waits until deadline for a node of its pool, and why each is refused.
// A download that has left a node keeps its status: it shows its failovers.
func (d *download) showNodeWait(ctx workflow.Context, pick activities.Pick, deadline time.Time) error {
	if d.status != imagestate.Pending || d.waitingUntil != nil ||
		workflow.GetVersion(ctx, nodeWaitShown, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	msg := d.nodeWaitMessage(pick, deadline)
	d.waitingUntil, d.waitingMessage = &deadline, msg
	if err := d.record(ctx, a.MarkWaiting, activities.WaitingRequest{ImageID: d.imageID, Until: deadline, Message: msg}); err != nil {
		return err
	}
	d.showDetails(ctx)
	return nil
}

// nodeWaitMessage says which pool's node the download waits for, until
// when, and why each node is refused now.
func (d *download) nodeWaitMessage(pick activities.Pick, deadline time.Time) string {
	var refused []string
	for _, r := range pick.Refused {
		refused = append(refused, fmt.Sprintf("%s: %s", r.NodeID, r.Reason))
	}
	return fmt.Sprintf("%s pool %q until %s (then it fails with no_node_available); refused now: %s",
		waitingForNode, d.plan.PoolID, deadline.UTC().Format("15:04:05 MST"), listOr(refused, "no node serves the pool"))
}

// waitingForNode begins the message of a download that waits for a node.
const waitingForNode = "waiting for a node of"

// noNodeMessage says which nodes the pool has, which were tried and why
// each is refused, and what to do.
func (d *download) noNodeMessage(pick activities.Pick, waited time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "no node can download into pool %q (waited %s). ", d.plan.PoolID, waited.Round(time.Second))
	if len(pick.Assigned) == 0 && len(pick.Refused) == 0 {
		b.WriteString("The pool has no nodes assigned and no node agent reports it: assign nodes to the pool, or start an agent with --pool " + d.plan.PoolID + "=DIR.")
		return b.String()
	}
	fmt.Fprintf(&b, "Assigned nodes: %s. ", listOr(pick.Assigned, "none"))
	if len(d.failovers) > 0 {
		var tried []string
		for _, f := range d.failovers {
			tried = append(tried, fmt.Sprintf("%s (%s)", f.NodeID, f.Reason))
		}
		fmt.Fprintf(&b, "Tried in this download and failed: %s. ", strings.Join(tried, "; "))
	}
	var refused []string
	for _, r := range pick.Refused {
		refused = append(refused, fmt.Sprintf("%s: %s", r.NodeID, r.Reason))
	}
	fmt.Fprintf(&b, "Refused: %s. ", listOr(refused, "none"))
	b.WriteString("Start or fix the node agents of this pool so the worker can reach them (check their address and --node-token), or assign another node to the pool, then start the download again.")
	return b.String()
}

// mirrorUnreachable reports whether every node tried so far gave up
// because the mirror failed it: waiting for another node will not help,
// as with a machine that has no internet access.
func (d *download) mirrorUnreachable() bool {
	for _, f := range d.failovers {
		if f.Code != fault.UpstreamError {
			return false
		}
	}
	return len(d.failovers) > 0
}

func (d *download) mirrorMessage() string {
	var tried []string
	for _, f := range d.failovers {
		tried = append(tried, fmt.Sprintf("%s (%s)", f.NodeID, f.Reason))
	}
	return fmt.Sprintf("the mirror could not be reached from any node of pool %q: %s. "+
		"Check that the nodes can reach %s (internet access, proxy, firewall, DNS) and that the URL is right, then start the download again.",
		d.plan.PoolID, strings.Join(tried, "; "), d.src.URL)
}

func listOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ", ")
}

// failover records that a node failed the download (in the image record
// too, so the API shows it at once) and leaves the node behind.
// On a local pool the node is asked, best effort and in the background,
// to stop its job and remove the partial data; on a shared pool that data is what the next
// node resumes from, so it stays. A node that was only unreachable may
// come back (see mayComeBack): its partial data on a local pool is kept
// until the download goes on on another node.
func (d *download) failover(ctx workflow.Context, nodeID, reason, code string) error {
	workflow.GetLogger(ctx).Warn("failing over", "image_id", d.imageID, "node_id", nodeID, "code", code, "reason", reason)
	d.failovers = append(d.failovers, Failover{NodeID: nodeID, Reason: reason, Code: code, At: workflow.Now(ctx).UTC()})
	d.failed = append(d.failed, nodeID)
	comesBack := d.mayComeBack(ctx, nodeID, code)
	d.mayReturn = slices.DeleteFunc(d.mayReturn, func(id string) bool { return id == nodeID })
	if comesBack {
		d.mayReturn = append(d.mayReturn, nodeID)
	}
	d.showDetails(ctx)
	if err := d.record(ctx, a.RecordFailovers, activities.FailoversRequest{ImageID: d.imageID, Failovers: d.failovers}); err != nil {
		return err
	}
	switch {
	case d.plan.Shared:
	case comesBack:
		if !slices.Contains(d.leftBehind, nodeID) {
			d.leftBehind = append(d.leftBehind, nodeID)
		}
	default:
		d.cancelLeftBehind(ctx, nodeID)
	}
	d.jobStarted = false
	return nil
}

// unreachableNodeMayReturn is the change that lets a node left because it
// could not be reached be picked again (and keeps its partial data on a
// local pool meanwhile); histories recorded before it replay without.
const unreachableNodeMayReturn = "unreachable-node-may-return"

// maxReturns bounds how often one download takes back a node that keeps
// becoming unreachable: each round costs the node grace.
const maxReturns = 3

// mayComeBack says whether a node the download leaves may be picked again
// when no other node can take it: it was unreachable (its agent crashed,
// the node rebooted, the network was cut: not a failure of its own with
// the image), not too often. Before, such a node was left for good, and a
// pool's only node that restarted after the node grace lost every download
// it had: they waited for another node and failed no_node_available.
func (d *download) mayComeBack(ctx workflow.Context, nodeID, code string) bool {
	if code != fault.NodeUnreachable {
		return false
	}
	if workflow.GetVersion(ctx, unreachableNodeMayReturn, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return false
	}
	times := 0
	for _, f := range d.failovers {
		if f.NodeID == nodeID && f.Code == fault.NodeUnreachable {
			times++
		}
	}
	return times <= maxReturns
}

// leaveBehind removes, in the background, the partial data of the local
// pool's nodes left while unreachable, now that the download goes on on
// next ("" when it does not go on): but not next's own, which it resumes.
func (d *download) leaveBehind(ctx workflow.Context, next string) {
	for _, nodeID := range d.leftBehind {
		if nodeID != next {
			d.cancelLeftBehind(ctx, nodeID)
		}
	}
	d.leftBehind = nil
}

// cancelLeftBehind asks a node left behind, best effort and in the
// background, to stop its job and remove its partial data. Not waited
// for: a node that is unreachable would hold the download up for the
// clean-up's timeouts.
func (d *download) cancelLeftBehind(ctx workflow.Context, nodeID string) {
	req := activities.CancelRequest{NodeID: nodeID, DownloadID: d.downloadID()}
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, cleanupOptions), a.CancelOnNode, req)
	workflow.Go(ctx, func(ctx workflow.Context) {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("clean up on the node left behind", "image_id", d.imageID, "node_id", nodeID, "error", err)
		}
	})
}
