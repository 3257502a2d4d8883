package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/launch"
)

// distributeAgents is how many agents (each with its local pool) the
// distribute part copies to.
const distributeAgents = 8

// distributeTimeout bounds each phase of the part.
const distributeTimeout = 30 * time.Minute

// benchDistribute puts a 1 GiB image onto 8 local pools on loopback, three
// ways, one after the other: one copy (a download into one pool, the unit
// of time), the naive way (8 downloads from the mirror at once), and one
// distribution (the mirror once, then agent to agent). It reports the bytes
// the mirror served per file size (goal 1.00) and the wall time against one
// copy (goal ≤ 4×, log₂ 8 + 1 rounds).
func (b *bench) benchDistribute(ctx context.Context) {
	const part = "distribute"
	if !b.needControl(part) {
		return
	}
	if err := b.ensureAgents(ctx, distributeAgents); err != nil {
		b.rep.skip(part, "start the agents: "+err.Error())
		return
	}
	src, err := makeSource(b.mirror.dir, "distribute-1G.img", 1<<30)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	ac := newAPIClient(b.stack.apiURL)
	var pools []string
	for _, a := range b.stack.agents[:distributeAgents] {
		pools = append(pools, a.local)
	}

	// One copy: the unit of time.
	one, err := b.downloads(ctx, ac, src, "dist-one", pools[:1])
	if err != nil {
		b.rep.skip(part, "one copy: "+err.Error())
		return
	}
	// The naive way: a download from the mirror into each pool, at once.
	naive, err := b.downloads(ctx, ac, src, "dist-naive", pools)
	if err != nil {
		b.rep.skip(part, "naive: "+err.Error())
		return
	}
	dist, err := b.distribution(ctx, ac, src, "dist-peer", pools)
	if err != nil {
		b.rep.skip(part, "distribution: "+err.Error())
		return
	}
	size := float64(src.Size)
	b.rep.add(part, "one copy of 1 GiB from the mirror", one.took.Round(10*time.Millisecond).String())
	b.rep.add(part, "naive: 8 downloads from the mirror, mirror bytes / file size", fmt.Sprintf("%.2f", float64(naive.mirrorBytes)/size))
	b.rep.add(part, "naive: wall time / one copy", ratio(naive.took.Seconds()/one.took.Seconds()))
	b.rep.note("%s", naive.took.Round(10*time.Millisecond))
	mirrorRatio := float64(dist.mirrorBytes) / size
	b.rep.goal(part, "distribution to 8 pools: mirror bytes / file size", fmt.Sprintf("%.2f", mirrorRatio), "1.00", dist.mirrorBytes == src.Size)
	timeRatio := dist.took.Seconds() / one.took.Seconds()
	b.rep.goal(part, "distribution to 8 pools: wall time / one copy", ratio(timeRatio), "≤ 4.00×", timeRatio <= 4)
	b.rep.note("%s; %s", dist.took.Round(10*time.Millisecond), dist.note)
}

// phase is what one way of copying took.
type phase struct {
	took        time.Duration
	mirrorBytes int64
	note        string
}

// downloads starts a download of src (named name on the mirror) into each
// pool at once, waits for all to be READY, and removes them.
func (b *bench) downloads(ctx context.Context, ac *apiClient, src source, name string, pools []string) (phase, error) {
	ctx, cancel := context.WithTimeout(ctx, distributeTimeout)
	defer cancel()
	file := name + ".img"
	start := time.Now()
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = ac.DeleteImage(context.Background(), id)
		}
	}()
	for _, p := range pools {
		img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(file, src.Name, 0), "name": name,
			"checksum": src.Checksum(), "pool_id": p})
		if err != nil {
			return phase{}, err
		}
		ids = append(ids, img.ID)
	}
	var last time.Time
	for _, id := range ids {
		img, at, err := ac.waitImage(ctx, id, 100*time.Millisecond)
		if err != nil {
			return phase{}, err
		}
		if img.Status != "READY" {
			return phase{}, fmt.Errorf("image %s ended %s: %s", id, img.Status, errText(img))
		}
		last = maxTime(last, at)
	}
	return phase{took: last.Sub(start), mirrorBytes: b.mirror.bytesFor(file)}, nil
}

// distribution posts one distribution of src into the pools, waits for it
// to be READY, and removes its images.
func (b *bench) distribution(ctx context.Context, ac *apiClient, src source, name string, pools []string) (phase, error) {
	ctx, cancel := context.WithTimeout(ctx, distributeTimeout)
	defer cancel()
	file := name + ".img"
	start := time.Now()
	var d api.Distribution
	_, err := ac.Call(ctx, http.MethodPost, "/v1/distributions", map[string]any{"url": b.mirror.fileURL(file, src.Name, 0), "name": name,
		"checksum": src.Checksum(), "pool_ids": pools}, &d)
	if err != nil {
		return phase{}, err
	}
	for d.Status == "RUNNING" {
		select {
		case <-ctx.Done():
			return phase{}, fmt.Errorf("distribution %s still RUNNING: %w", d.ID, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := ac.Call(ctx, http.MethodGet, "/v1/distributions/"+d.ID, nil, &d); err != nil {
			return phase{}, err
		}
	}
	took := time.Since(start)
	defer func() {
		for _, c := range d.Copies {
			_ = ac.DeleteImage(context.Background(), c.ImageID)
		}
	}()
	if d.Status != "READY" {
		return phase{}, fmt.Errorf("distribution %s ended %s: %s", d.ID, d.Status, d.Message)
	}
	peers := 0
	for _, c := range d.Copies {
		if c.Source != "mirror" {
			peers++
		}
	}
	return phase{took: took, mirrorBytes: b.mirror.bytesFor(file),
		note: fmt.Sprintf("%d copies from peers, %d from the mirror", peers, len(d.Copies)-peers)}, nil
}

// ensureAgents starts agents up to n (node-{k}, each with its local pool
// local-{k}) and registers the new ones.
func (b *bench) ensureAgents(ctx context.Context, n int) error {
	var nodes []launch.Node
	var pools []launch.Pool
	for i := len(b.stack.agents) + 1; i <= n; i++ {
		a, err := b.stack.startAgent("node-"+strconv.Itoa(i), b.stack.bin, 32)
		if err != nil {
			return err
		}
		b.stack.agents = append(b.stack.agents, a)
		nodes = append(nodes, launch.Node{ID: a.id, Address: a.proxy.addr})
		pools = append(pools, launch.Pool{ID: a.local, NodeIDs: []string{a.id}})
	}
	if len(nodes) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return launch.Register(rctx, newAPIClient(b.stack.apiURL).Client, nodes, pools)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
