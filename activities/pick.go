package activities

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

// PickRequest asks for a node to download into a pool.
type PickRequest struct {
	PoolID          string
	PreferredNodeID string
	Exclude         []string // nodes that already failed in this download
}

// Candidate is a node that can take the download.
type Candidate struct {
	NodeID          string
	ActiveDownloads int
	FreeBytes       uint64
}

// Refusal is a node that cannot take the download, and why.
type Refusal struct {
	NodeID string
	Reason string
}

// Pick is the outcome of PickNode: the chosen node (nil when none can take
// the download), the nodes assigned to the pool, and why the others were
// refused — the workflow's no_node_available message is built from them.
type Pick struct {
	Node     *Candidate
	Assigned []string
	Refused  []Refusal
}

// healthTimeout bounds one health check: a node slower than that is as
// good as down for starting a download.
const healthTimeout = 5 * time.Second

// PickNode checks the health of the pool's nodes (those assigned to it and
// any that report it) and picks one that serves the pool: the preferred
// node if it can, else the one with the fewest active downloads, then the
// most free space. Excluded nodes are refused without a check.
func (a *Activities) PickNode(ctx context.Context, in PickRequest) (Pick, error) {
	pool, err := a.Store.Pool(ctx, in.PoolID)
	if err != nil {
		return Pick{}, asStoreError(err)
	}
	nodes, err := a.Store.NodesForPool(ctx, in.PoolID)
	if err != nil {
		return Pick{}, err
	}
	pick := Pick{Assigned: pool.NodeIDs()}
	results := a.checkNodes(ctx, nodes, in)
	var ok []Candidate
	for i, n := range nodes {
		r := results[i]
		if r.refusal != "" {
			pick.Refused = append(pick.Refused, Refusal{NodeID: n.ID, Reason: r.refusal})
			continue
		}
		ok = append(ok, r.candidate)
	}
	sort.SliceStable(ok, func(i, j int) bool { return better(ok[i], ok[j], in.PreferredNodeID) })
	if len(ok) > 0 {
		pick.Node = &ok[0]
		activity.GetLogger(ctx).Info("node picked", "pool_id", in.PoolID, "node_id", ok[0].NodeID, "active_downloads", ok[0].ActiveDownloads)
	}
	return pick, nil
}

func better(x, y Candidate, preferred string) bool {
	if (x.NodeID == preferred) != (y.NodeID == preferred) {
		return x.NodeID == preferred
	}
	if x.ActiveDownloads != y.ActiveDownloads {
		return x.ActiveDownloads < y.ActiveDownloads
	}
	return x.FreeBytes > y.FreeBytes
}

type checked struct {
	candidate Candidate
	refusal   string
}

// checkNodes health-checks the nodes at once, so one dead node costs the
// pick its timeout only once, and records what it found.
func (a *Activities) checkNodes(ctx context.Context, nodes []store.Node, in PickRequest) []checked {
	out := make([]checked, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if slices.Contains(in.Exclude, n.ID) {
			out[i] = checked{refusal: "already failed in this download"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = a.checkNode(ctx, n, in.PoolID)
		}()
	}
	wg.Wait()
	return out
}

func (a *Activities) checkNode(ctx context.Context, n store.Node, poolID string) checked {
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	h, err := a.agent(n).Health(hctx)
	now := time.Now()
	if err != nil {
		a.recordHealth(ctx, n.ID, store.NodeHealth{Online: false, At: now})
		return checked{refusal: fmt.Sprintf("health check of %s failed: %v", n.Address, err)}
	}
	if h.NodeID != "" && h.NodeID != n.ID {
		// Its pools are another node's: record it offline, as the API's
		// health checks do, rather than online with those pools.
		a.recordHealth(ctx, n.ID, store.NodeHealth{Online: false, At: now})
		return checked{refusal: fmt.Sprintf("the agent at %s says it is node %q: fix the node's address or the agent's --node-id", n.Address, h.NodeID)}
	}
	pools := h.PoolIDs()
	a.recordHealth(ctx, n.ID, store.NodeHealth{Online: true, Pools: pools, Space: poolSpace(h),
		ActiveDownloads: h.ActiveDownloads, At: now})
	p, ok := h.Pool(poolID)
	if !ok {
		return checked{refusal: fmt.Sprintf("its agent does not serve pool %q (it serves: %s): start it with --pool %s=DIR", poolID, strings.Join(pools, ", "), poolID)}
	}
	return checked{candidate: Candidate{NodeID: n.ID, ActiveDownloads: h.ActiveDownloads, FreeBytes: p.FreeBytes}}
}

func (a *Activities) recordHealth(ctx context.Context, nodeID string, h store.NodeHealth) {
	if err := a.Store.RecordNodeHealth(ctx, nodeID, h); err != nil {
		activity.GetLogger(ctx).Warn("record node health", "node_id", nodeID, "error", err)
	}
}

// poolSpace is the free and total bytes of each pool the agent reports.
func poolSpace(h agentclient.Health) store.PoolSpace {
	space := make(store.PoolSpace, len(h.Pools))
	for _, p := range h.Pools {
		space[p.ID] = store.Space{FreeBytes: p.FreeBytes, TotalBytes: p.TotalBytes}
	}
	return space
}
