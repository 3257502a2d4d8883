package activities

import (
	"context"
	"slices"
	"sort"
	"sync"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/store"
)

// PickRequest asks for a node to download into a pool.
type PickRequest struct {
	PoolID          string
	PreferredNodeID string
	Exclude         []string // nodes that already failed in this download
	// LastResort are nodes of Exclude that failed only by being
	// unreachable (a crash, a reboot, a cut network): picked again when
	// no other node can take the download, to resume where they were.
	LastResort []string `json:",omitempty"`
	// Upload: the node must receive an upload (its agent names
	// agentclient.FeatureUpload).
	Upload bool `json:",omitempty"`
}

// Candidate is a node that can take the download.
type Candidate struct {
	NodeID          string
	ActiveDownloads int
	FreeBytes       uint64
	// Converts: the node's agent converts images (it has qemu-img), so a
	// pool's image_format can be asked of it.
	Converts bool
	// Pauses: the node's agent pauses a download and keeps its partial
	// data; at the end of a transfer window only such a node is paused
	// (another one runs on: stopping it would waste what it fetched).
	Pauses bool `json:",omitempty"`
	// Features are what the node's agent supports (agentclient.Feature*):
	// a download's mirrors and credential are sent only to one that says so.
	Features []string
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

// PickNode checks the health of the pool's nodes (those assigned to it and
// any that report it) and picks one that serves the pool: the preferred
// node if it can, else the one with the fewest active downloads, then the
// most free space. Excluded nodes are refused without a check, except the
// last-resort ones, picked only when no other node can take the download.
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
	results := a.checkNodes(ctx, nodes, pool, in)
	var ok, again []Candidate
	for i, n := range nodes {
		r := results[i]
		switch {
		case r.refusal != "":
			pick.Refused = append(pick.Refused, Refusal{NodeID: n.ID, Reason: r.refusal})
		case slices.Contains(in.Exclude, n.ID):
			again = append(again, r.candidate)
		default:
			ok = append(ok, r.candidate)
		}
	}
	lastResort := len(ok) == 0 && len(again) > 0
	if lastResort {
		ok = again
	}
	sort.SliceStable(ok, func(i, j int) bool { return better(ok[i], ok[j], in.PreferredNodeID) })
	if len(ok) > 0 {
		pick.Node = &ok[0]
		activity.GetLogger(ctx).Info("node picked", "pool_id", in.PoolID, "node_id", ok[0].NodeID, "active_downloads", ok[0].ActiveDownloads,
			"unreachable_before", lastResort) // no other node could take it: the one left behind is back
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
func (a *Activities) checkNodes(ctx context.Context, nodes []store.Node, pool store.Pool, in PickRequest) []checked {
	out := make([]checked, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if slices.Contains(in.Exclude, n.ID) && !slices.Contains(in.LastResort, n.ID) {
			out[i] = checked{refusal: "already failed in this download"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = a.checkNode(ctx, n, pool, in)
		}()
	}
	wg.Wait()
	return out
}

func (a *Activities) checkNode(ctx context.Context, n store.Node, pool store.Pool, in PickRequest) checked {
	v := a.checkHealth(ctx, n)
	if r := v.RefusalFor(n, pool); r != "" {
		return checked{refusal: r}
	}
	if in.Upload && !v.Uploads {
		return checked{refusal: "its agent does not receive uploads: upgrade it to a version that names the \"upload\" feature in /v1/health"}
	}
	return checked{candidate: Candidate{NodeID: n.ID, ActiveDownloads: v.Health.ActiveDownloads,
		FreeBytes: v.Health.Space[pool.ID].FreeBytes, Converts: v.Converts, Pauses: v.Pauses, Features: v.Features}}
}
