package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const (
	// bandwidthCap is the rate the bandwidth part limits to: well below
	// what loopback carries, so the limiter, not the machine, sets it.
	bandwidthCap = 40_000_000
	// bandwidthWindow is the span the rate is measured over, after
	// bandwidthWarmup (the bucket's initial burst and the first requests).
	bandwidthWindow = 10 * time.Second
	bandwidthWarmup = 2 * time.Second
)

// benchBandwidth measures how closely the agent holds a bandwidth cap over
// 10 s: the node's --max-bandwidth shared by two downloads at once, and
// one download's own max_bytes_per_second on an agent without a cap.
func (b *bench) benchBandwidth(ctx context.Context) {
	const part = "bandwidth"
	need := int64(bandwidthCap * (bandwidthWindow + bandwidthWarmup + time.Second).Seconds())
	if b.big.Size < need {
		b.rep.skip(part, fmt.Sprintf("the source file is %s; the bandwidth part needs %s (-size)", mib(b.big.Size), mib(need)))
		return
	}
	url := b.mirror.fileURL(b.big.Name, "", 0)
	capped, err := b.stack.startAgent("node-bw", b.stack.bin, 4, "--max-bandwidth", fmt.Sprint(bandwidthCap))
	if err != nil {
		b.rep.skip(part, "agent with --max-bandwidth: "+err.Error())
		return
	}
	defer func() {
		_ = capped.p.Stop()
		capped.proxy.close()
	}()
	b.rep.add(part, "cap", fmt.Sprintf("%.1f MB/s, measured over %v after %v", bandwidthCap/1e6, bandwidthWindow, bandwidthWarmup))
	for _, run := range []struct {
		name  string
		a     *agent
		n     int
		perDL int64
	}{
		{"--max-bandwidth, 2 downloads together", capped, 2, 0},
		{"max_bytes_per_second, 1 download", b.stack.agents[0], 1, bandwidthCap},
	} {
		got, err := measureRate(ctx, run.a, b.big, url, run.n, run.perDL)
		if err != nil {
			b.rep.goal(part, run.name, "failed", "", false)
			b.rep.note("%v", err)
			continue
		}
		off := (got - bandwidthCap) / bandwidthCap
		b.rep.goal(part, run.name, fmt.Sprintf("%.2f MB/s (%+.1f %%)", got/1e6, 100*off), "within ±5 % of the cap", math.Abs(off) <= 0.05)
	}
}

// measureRate starts n downloads of src on a at once (each capped at
// perDL when > 0), and returns their bytes a second together over
// bandwidthWindow, then cancels them.
func measureRate(ctx context.Context, a *agent, src source, url string, n int, perDL int64) (float64, error) {
	c := a.client()
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = c.CancelDownload(context.Background(), id)
		}
	}()
	for i := 0; i < n; i++ {
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-bw-%d-%s-%d", os.Getpid(), a.id, i), URL: url,
			PoolID: a.local, FileName: fmt.Sprintf("bw-%d.img", i), Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw",
			MaxBytesPerSecond: perDL}
		if _, err := c.StartDownload(ctx, req); err != nil {
			return 0, err
		}
		ids = append(ids, req.ID)
	}
	moved := func() (int64, error) {
		var sum int64
		for _, id := range ids {
			d, err := c.Download(ctx, id)
			if err != nil {
				return 0, err
			}
			if d.Finished() {
				return 0, fmt.Errorf("download %s ended %s (%v) before the window closed", id, d.State, d.Error)
			}
			sum += d.BytesDone
		}
		return sum, nil
	}
	select {
	case <-time.After(bandwidthWarmup):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	before, err := moved()
	if err != nil {
		return 0, err
	}
	began := time.Now()
	select {
	case <-time.After(bandwidthWindow):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	after, err := moved()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / time.Since(began).Seconds(), nil
}
