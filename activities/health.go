package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// healthTimeout bounds one health check: a node slower than that is as
// good as down, for starting a download and for its status.
const healthTimeout = 5 * time.Second

// NodeVerdict is what one health check says about a node: the health to
// record, why it is offline (empty when it is online), and whether its
// agent converts images (it has qemu-img: agentclient.FeatureConvert).
type NodeVerdict struct {
	Health   store.NodeHealth
	Reason   string
	Converts bool
	// Pauses: the agent pauses a download keeping its partial data
	// (agentclient.FeaturePause), as transfer windows need.
	Pauses bool
	// Features are what the agent says it supports (agentclient.Feature*).
	Features []string
	// Uploads: the agent receives uploads (agentclient.FeatureUpload).
	Uploads bool `json:",omitempty"`
}

// JudgeHealth is the one place that turns an agent's answer to a health
// check (or the error instead of one) into a node's status. An agent that
// answers as another node is a misconfiguration (the wrong address) and
// counts as offline, rather than online with that node's pools.
func JudgeHealth(n store.Node, h agentclient.Health, err error, at time.Time) NodeVerdict {
	switch {
	case err != nil:
		return NodeVerdict{Health: store.NodeHealth{At: at},
			Reason: fmt.Sprintf("health check of %s failed: %v", n.Address, err)}
	case h.NodeID != "" && h.NodeID != n.ID:
		return NodeVerdict{Health: store.NodeHealth{At: at},
			Reason: fmt.Sprintf("the agent at %s says it is node %q: fix the node's address or the agent's --node-id", n.Address, h.NodeID)}
	}
	space := make(store.PoolSpace, len(h.Pools))
	for _, p := range h.Pools {
		space[p.ID] = store.Space{FreeBytes: p.FreeBytes, TotalBytes: p.TotalBytes}
	}
	return NodeVerdict{Health: store.NodeHealth{Online: true, Pools: h.PoolIDs(), Space: space,
		ActiveDownloads: h.ActiveDownloads, At: at}, Converts: h.Supports(agentclient.FeatureConvert),
		Pauses: h.Supports(agentclient.FeaturePause), Features: h.Features, Uploads: h.Supports(agentclient.FeatureUpload)}
}

// RefusalFor says why the judged node cannot download into pool, or ""
// when it can: it is offline, its agent does not serve the pool, or the
// pool wants its images in a format (image_format) and the agent cannot
// convert them.
func (v NodeVerdict) RefusalFor(n store.Node, pool store.Pool) string {
	switch {
	case !v.Health.Online:
		return v.Reason
	case !slices.Contains(v.Health.Pools, pool.ID):
		return fmt.Sprintf("its agent does not serve pool %q (it serves: %s): start it with --pool %s=DIR",
			pool.ID, strings.Join(v.Health.Pools, ", "), pool.ID)
	case pool.ImageFormat != "" && !v.Converts:
		return fmt.Sprintf("%s has no qemu-img, and pool %q wants its images as %s: install qemu-utils there (apt-get install qemu-utils) and restart its agent, or download into a pool without image_format",
			n.ID, pool.ID, pool.ImageFormat)
	}
	return ""
}

// checkHealth asks a node's agent for its health, judges the answer and
// records it.
func (a *Activities) checkHealth(ctx context.Context, n store.Node) NodeVerdict {
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	h, err := a.client(n).Health(hctx)
	cancel()
	v := JudgeHealth(n, h, err, time.Now())
	if ctx.Err() != nil {
		return v // stopped, not the node's doing: record nothing
	}
	switch {
	case !v.Health.Online && n.Status != store.NodeOffline:
		activity.GetLogger(ctx).Warn("node is offline", "node_id", n.ID, "address", n.Address, "reason", v.Reason)
	case v.Health.Online && n.Status != store.NodeOnline:
		activity.GetLogger(ctx).Info("node is online", "node_id", n.ID, "address", n.Address, "pools", v.Health.Pools)
	}
	if err := a.Store.RecordNodeHealth(ctx, n.ID, v.Health); err != nil {
		activity.GetLogger(ctx).Warn("record node health", "node_id", n.ID, "error", err) // deleted meanwhile, or the database is down
	}
	return v
}

// NodeHealthSummary counts what one round of health checks found.
type NodeHealthSummary struct {
	Online  int
	Offline int
}

// CheckAllNodes checks every registered node's agent at once, so one dead
// node costs the round its timeout only once, and records each status.
// NodeHealthWorkflow runs it once per interval for the whole cluster.
func (a *Activities) CheckAllNodes(ctx context.Context) (NodeHealthSummary, error) {
	nodes, err := a.Store.Nodes(ctx)
	if err != nil {
		return NodeHealthSummary{}, err
	}
	online := make([]bool, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			online[i] = a.checkHealth(ctx, n).Health.Online
		}()
	}
	wg.Wait()
	var sum NodeHealthSummary
	for _, on := range online {
		if on {
			sum.Online++
		} else {
			sum.Offline++
		}
	}
	return sum, ctx.Err()
}
