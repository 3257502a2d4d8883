package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/nodeagent"
)

// contestant is one way of putting the source file on disk.
type contestant struct {
	name string
	// run downloads once (round r) and returns the wall time and the peak
	// RSS of what ran (0 when not measured per run).
	run   func(ctx context.Context, r int) (time.Duration, int64, error)
	times []time.Duration
	byRnd map[int]time.Duration
	peak  int64
	err   error
}

// benchTransfer puts the big source file on disk every way, interleaved
// over rounds (each round starts with a different contestant), and
// reports medians as ratios to curl.
func (b *bench) benchTransfer(ctx context.Context) {
	const part = "transfer"
	src := b.big
	url := b.mirror.fileURL(src.Name, "", 0)
	out := filepath.Join(b.dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	dst := filepath.Join(out, src.Name)
	shell := func(script string) func(context.Context, int) (time.Duration, int64, error) {
		return func(ctx context.Context, _ int) (time.Duration, int64, error) {
			defer os.Remove(dst)
			d, rss, stdout, err := timed(ctx, "sh", "-c", script)
			if err == nil && strings.Contains(script, "sha256sum") && !strings.HasPrefix(stdout, src.SHA256) {
				err = fmt.Errorf("sha256sum says %.64s, want %s", stdout, src.SHA256)
			}
			return d, rss, err
		}
	}
	q := func(s string) string { return "'" + s + "'" }
	cs := []*contestant{
		{name: "curl -o", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url))},
		{name: "curl -o + sha256sum", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url) + " && sha256sum " + q(dst))},
		{name: "curl -o + sync", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url) + " && sync " + q(dst))},
		{name: "wget -O", run: shell("wget -q -O " + q(dst) + " " + q(url))},
		{name: "node agent (sha256, fsync)", run: b.agentDownload(b.stack.agents[0], src, url)},
	}
	if b.alt != nil {
		cs = append(cs, &contestant{name: "node agent, -compare-bin", run: b.agentDownload(b.alt, src, url)})
	}
	if b.stack.controlErr == nil {
		cs = append(cs, &contestant{name: "whole path API→READY", run: b.wholePath(src, url)})
	}
	for r := 0; r < b.rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			if c.err != nil {
				continue
			}
			settle()
			d, rss, err := c.run(ctx, r)
			if err != nil {
				c.err = err
				continue
			}
			c.times = append(c.times, d)
			if c.byRnd == nil {
				c.byRnd = map[int]time.Duration{}
			}
			c.byRnd[r] = d
			c.peak = max(c.peak, rss)
		}
	}
	b.rep.add(part, "file", fmt.Sprintf("%s, %d rounds; median rate, median of per-round ratios to curl", mib(src.Size), b.rounds))
	ratios := map[string]float64{}
	for _, c := range cs {
		if c.err != nil {
			b.rep.goal(part, c.name, "failed", "", false)
			b.rep.note("%v", c.err)
			continue
		}
		x := pairedRatio(cs[0], c)
		ratios[c.name] = x
		value := fmt.Sprintf("%s (%s)", rate(src.Size, median(c.times)), ratio(x))
		switch c.name {
		case "node agent (sha256, fsync)":
			b.rep.goal(part, c.name, value, "≥ 0.90× curl", x >= 0.9)
		case "whole path API→READY":
			b.rep.goal(part, c.name, value, "≥ 0.85× curl", x >= 0.85)
		default:
			b.rep.add(part, c.name, value)
		}
		if c.peak > 0 {
			b.rep.note("peak RSS %s; times %s", mib(c.peak), durations(c.times))
		} else {
			b.rep.note("times %s", durations(c.times))
		}
	}
	agent, sum, sync := ratios["node agent (sha256, fsync)"], ratios["curl -o + sha256sum"], ratios["curl -o + sync"]
	if agent > 0 && sum > 0 {
		b.rep.goal(part, "node agent vs curl + sha256sum", ratio(agent/sum), "> 1.00×", agent > sum)
	}
	if agent > 0 && sync > 0 {
		b.rep.add(part, "node agent vs curl + sync (same durability)", ratio(agent/sync))
	}
}

// pairedRatio is the median over rounds of base's time over c's time in
// the same round: a throughput ratio that shrugs off a noisy round.
func pairedRatio(base, c *contestant) float64 {
	var rs []time.Duration // ratios scaled by 1e6, to reuse median
	for r, d := range c.byRnd {
		if bd, ok := base.byRnd[r]; ok && d > 0 {
			rs = append(rs, time.Duration(1e6*bd.Seconds()/d.Seconds()))
		}
	}
	return float64(median(rs)) / 1e6
}

// settle flushes dirty pages left by the previous contestant, so no one
// pays for another's writeback.
func settle() {
	_ = exec.Command("sync").Run()
	time.Sleep(200 * time.Millisecond)
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.2fs", d.Seconds()))
	}
	return strings.Join(s, " ")
}

var maxRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

// timed runs a command under /usr/bin/time -v and returns its wall time,
// its peak RSS (the largest of its processes) and its stdout.
func timed(ctx context.Context, name string, args ...string) (time.Duration, int64, string, error) {
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v", name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, 0, "", fmt.Errorf("%s: %v: %s", name, err, lastLines(stderr.String(), 3))
	}
	var rss int64
	if m := maxRSS.FindStringSubmatch(stderr.String()); m != nil {
		kb, _ := strconv.ParseInt(m[1], 10, 64)
		rss = kb << 10
	}
	return d, rss, stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// agentDownload asks an agent directly (POST /v1/downloads), polls until the
// job ends and removes the published file.
func (b *bench) agentDownload(a *agent, src source, url string) func(context.Context, int) (time.Duration, int64, error) {
	return func(ctx context.Context, r int) (time.Duration, int64, error) {
		c := a.client()
		req := nodeagent.DownloadRequest{ID: fmt.Sprintf("bench-transfer-%d-%d", os.Getpid(), r), URL: url,
			PoolID: a.local, FileName: src.Name, Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw"}
		start := time.Now()
		d, err := runAgentJob(ctx, c, req, 10*time.Millisecond)
		took := time.Since(start)
		defer c.DeleteFile(context.Background(), a.local, src.Name)
		if err != nil {
			return took, 0, err
		}
		if d.State != nodeagent.StateCompleted {
			return took, 0, fmt.Errorf("agent job %s ended %s: %v", req.ID, d.State, d.Error)
		}
		m, _ := a.p.mem()
		return took, m.Peak, nil
	}
}

// runAgentJob starts a job on an agent and polls it until it ends.
func runAgentJob(ctx context.Context, c *nodeagent.Client, req nodeagent.DownloadRequest, every time.Duration) (nodeagent.Download, error) {
	d, err := c.StartDownload(ctx, req)
	if err != nil {
		return d, err
	}
	for !d.Finished() {
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(every):
		}
		if d, err = c.Download(ctx, req.ID); err != nil {
			return d, err
		}
	}
	return d, nil
}

// wholePath downloads through the API: POST /v1/images on node-1's local
// pool, then polls until READY; the image is deleted afterwards.
func (b *bench) wholePath(src source, url string) func(context.Context, int) (time.Duration, int64, error) {
	a := b.stack.agents[0]
	api := newAPIClient(b.stack.apiURL)
	return func(ctx context.Context, r int) (time.Duration, int64, error) {
		req := map[string]any{"url": url + "?round=" + strconv.Itoa(r), "name": fmt.Sprintf("bench-whole-%d", r),
			"checksum": src.Checksum(), "pool_id": a.local, "node_id": a.id}
		start := time.Now()
		img, _, err := api.createImage(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		img, at, err := api.waitImage(wctx, img.ID, 10*time.Millisecond)
		defer api.deleteImage(context.Background(), img.ID)
		if err != nil {
			return 0, 0, err
		}
		if img.Status != "READY" {
			return 0, 0, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, img.errText())
		}
		return at.Sub(start), 0, nil
	}
}
