package activities

import (
	"context"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// crashProbeTimeout bounds the health checks that tell a dead agent from
// a blip: the dead agent's host refuses at once, and a node that might
// take over is judged by an answer within it.
const crashProbeTimeout = 2 * time.Second

// standbyEvery is how often a watch whose node is down asks the pool's
// other nodes whether one can take over, while none can: a pool's agents
// are not health-checked every poll by every download of a dead node.
const standbyEvery = 5 * time.Second

// crashCheck is what a watch remembers of its node being down.
type crashCheck struct {
	nextStandby time.Time
}

// crashed tells a dead agent from a slow network, after a poll failed with
// err (not a timeout): it returns why the node's agent is down, or "" when
// the watch should treat the failure as a blip and wait the node grace.
//
// The agent is down when the poll's connection was refused or dropped and
// a health check right after is refused too: the host answers, and nothing
// listens on the agent's port. A frozen agent (SIGSTOP) or a partition
// never refuses, it times out, and waits the grace: it may come back, and
// may still hold the download's connection to the mirror.
//
// Failing over at once is only worth it on a shared pool, where the next
// node resumes the partial data the dead one left (on a local pool that
// data is on the dead node's disk, and its restarted agent resumes it),
// and only when another node can take the download now: a pool's only
// node that restarts would otherwise be left behind for good.
func (w *watch) crashed(ctx context.Context, err error) string {
	if !w.job.Shared || !(agentclient.Refused(err) || agentclient.Dropped(err)) {
		return ""
	}
	hctx, cancel := context.WithTimeout(ctx, crashProbeTimeout)
	_, herr := w.client.Health(hctx)
	cancel()
	if !agentclient.Refused(herr) {
		return "" // it answers, or it does not say no: not proven down
	}
	now := time.Now()
	if now.Before(w.crash.nextStandby) {
		return ""
	}
	standby := w.a.standby(ctx, w.job)
	if standby == "" {
		w.crash.nextStandby = now.Add(standbyEvery)
		activity.GetLogger(ctx).Warn("node is down and no other node of the pool can take over yet; waiting the node grace",
			"image_id", w.job.ImageID, "node_id", w.job.NodeID, "pool_id", w.job.PoolID, "error", herr)
		return ""
	}
	activity.GetLogger(ctx).Warn("node is down: failing over at once", "image_id", w.job.ImageID, "node_id", w.job.NodeID,
		"pool_id", w.job.PoolID, "standby", standby, "error", err)
	return "its agent dropped or refused the connection and refuses health checks (the agent is not running), " +
		"and " + standby + " can take over: failing over without waiting the node grace"
}

// standby names a node of the job's pool, other than the job's and those
// that already failed in this download, whose agent answers and can take
// the download now ("" when none can). Its health is recorded as a pick's.
func (a *Activities) standby(ctx context.Context, job Job) string {
	pool, err := a.Store.Pool(ctx, job.PoolID)
	if err != nil {
		return ""
	}
	nodes, err := a.Store.NodesForPool(ctx, job.PoolID)
	if err != nil {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, crashProbeTimeout)
	defer cancel()
	results := a.checkNodes(cctx, nodes, pool, PickRequest{PoolID: job.PoolID, Exclude: append(slices.Clone(job.Failed), job.NodeID)})
	for i, n := range nodes {
		if results[i].refusal == "" {
			return n.ID
		}
	}
	return ""
}
