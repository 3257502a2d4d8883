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

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// contestant is one way of putting the source file on disk.
type contestant struct {
	name string
	// run downloads once (round r).
	run   func(ctx context.Context, r int) (outcome, error)
	times []time.Duration
	cpu   []time.Duration
	byRnd map[int]time.Duration
	peak  int64
	err   error
}

// outcome is one download: its wall time, and the peak RSS and CPU time
// of what ran it (0 when not measured).
type outcome struct {
	took time.Duration
	rss  int64
	cpu  time.Duration
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
	shell := func(script string) func(context.Context, int) (outcome, error) {
		return func(ctx context.Context, _ int) (outcome, error) {
			defer os.Remove(dst)
			o, stdout, err := timed(ctx, "sh", "-c", script)
			if err == nil && strings.Contains(script, "sha256") && !strings.HasPrefix(stdout, src.SHA256) {
				err = fmt.Errorf("the checksum tool says %.64s, want %s", stdout, src.SHA256)
			}
			return o, err
		}
	}
	q := func(s string) string { return "'" + s + "'" }
	cs := []*contestant{
		{name: "curl -o", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url))},
		{name: "curl -o + sha256sum", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url) + " && sha256sum " + q(dst))},
		{name: "curl -o + openssl sha256", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url) + " && openssl dgst -sha256 -r " + q(dst))},
		{name: "curl -o + sync", run: shell("curl -sS --fail -o " + q(dst) + " " + q(url) + " && sync " + q(dst))},
		{name: "wget -O", run: shell("wget -q -O " + q(dst) + " " + q(url))},
		{name: "node agent (sha256, fsync)", run: b.agentDownload(b.stack.agents[0], src, url)},
	}
	if b.alt != nil {
		cs = append(cs, &contestant{name: "node agent, -compare-bin", run: b.agentDownload(b.alt, src, url)})
	}
	if len(b.stack.agents) >= 2 {
		peer := &contestant{name: "node agent, peer copy from node-1", run: b.peerCopy(b.stack.agents[0], b.stack.agents[1], src)}
		if remove, err := seedPeer(ctx, b.stack.agents[0], src, url); err != nil {
			peer.err = err
		} else {
			defer remove()
		}
		cs = append(cs, peer)
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
			o, err := c.run(ctx, r)
			if err != nil {
				c.err = err
				continue
			}
			c.times, c.cpu = append(c.times, o.took), append(c.cpu, o.cpu)
			if c.byRnd == nil {
				c.byRnd = map[int]time.Duration{}
			}
			c.byRnd[r] = o.took
			c.peak = max(c.peak, o.rss)
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
		case "node agent, peer copy from node-1":
			b.rep.goal(part, c.name, value, "≥ 0.90× curl", x >= 0.9)
		default:
			b.rep.add(part, c.name, value)
		}
		var cpu, peak string
		if m := median(c.cpu); m > 0 {
			cpu = fmt.Sprintf("CPU %.2fs/GiB", m.Seconds()*float64(1<<30)/float64(src.Size))
		}
		if c.peak > 0 {
			peak = "peak RSS " + mib(c.peak)
		}
		b.rep.note("%s", joinNonEmpty(cpu, peak, "times "+durations(c.times)))
	}
	agent, sum, sync := ratios["node agent (sha256, fsync)"], ratios["curl -o + sha256sum"], ratios["curl -o + sync"]
	if agent > 0 && sum > 0 {
		b.rep.goal(part, "node agent vs curl + sha256sum", ratio(agent/sum), "> 1.00×", agent > sum)
	}
	if ossl := ratios["curl -o + openssl sha256"]; agent > 0 && ossl > 0 {
		b.rep.add(part, "node agent vs curl + openssl sha256 (SHA-NI)", ratio(agent/ossl))
	}
	if agent > 0 && sync > 0 {
		b.rep.add(part, "node agent vs curl + sync (same durability)", ratio(agent/sync))
	}
	if peer := ratios["node agent, peer copy from node-1"]; agent > 0 && peer > 0 {
		b.rep.add(part, "peer copy vs mirror download (node agent)", ratio(peer/agent))
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

var (
	maxRSS  = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
	cpuUsed = regexp.MustCompile(`(?:User|System) time \(seconds\): ([0-9.]+)`)
)

// timed runs a command under /usr/bin/time -v and returns its wall time,
// peak RSS (the largest of its processes) and CPU time, and its stdout.
func timed(ctx context.Context, name string, args ...string) (outcome, string, error) {
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v", name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return outcome{took: d}, "", fmt.Errorf("%s: %v: %s", name, err, lastLines(stderr.String(), 3))
	}
	o := outcome{took: d}
	if m := maxRSS.FindStringSubmatch(stderr.String()); m != nil {
		kb, _ := strconv.ParseInt(m[1], 10, 64)
		o.rss = kb << 10
	}
	for _, m := range cpuUsed.FindAllStringSubmatch(stderr.String(), -1) {
		sec, _ := strconv.ParseFloat(m[1], 64)
		o.cpu += time.Duration(sec * float64(time.Second))
	}
	return o, stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// agentDownload asks an agent directly (POST /v1/downloads), polls until the
// job ends and removes the published file.
func (b *bench) agentDownload(a *agent, src source, url string) func(context.Context, int) (outcome, error) {
	return func(ctx context.Context, r int) (outcome, error) {
		c := a.client()
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-transfer-%d-%d", os.Getpid(), r), URL: url,
			PoolID: a.local, FileName: src.Name, Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw"}
		pid := a.p.Pid()
		cpu, start := cpuTime(pid), time.Now()
		d, err := runAgentJob(ctx, c, req, 10*time.Millisecond)
		o := outcome{took: time.Since(start), cpu: cpuTime(pid) - cpu}
		defer c.DeleteFile(context.Background(), a.local, src.Name)
		if err != nil {
			return o, err
		}
		if d.State != agentclient.StateCompleted {
			return o, fmt.Errorf("agent job %s ended %s: %v", req.ID, d.State, d.Error)
		}
		m, _ := mem(a.p)
		o.rss = m.Peak
		return o, nil
	}
}

// runAgentJob starts a job on an agent and polls it until it ends.
func runAgentJob(ctx context.Context, c *agentclient.Client, req agentclient.DownloadRequest, every time.Duration) (agentclient.Download, error) {
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
func (b *bench) wholePath(src source, url string) func(context.Context, int) (outcome, error) {
	a := b.stack.agents[0]
	ac := newAPIClient(b.stack.apiURL)
	return func(ctx context.Context, r int) (outcome, error) {
		req := map[string]any{"url": url + "?round=" + strconv.Itoa(r), "name": fmt.Sprintf("bench-whole-%d", r),
			"checksum": src.Checksum(), "pool_id": a.local, "node_id": a.id}
		start := time.Now()
		img, _, err := ac.CreateImage(ctx, req)
		if err != nil {
			return outcome{}, err
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		img, at, err := ac.waitImage(wctx, img.ID, 10*time.Millisecond)
		defer ac.DeleteImage(context.Background(), img.ID)
		if err != nil {
			return outcome{}, err
		}
		if img.Status != "READY" {
			return outcome{}, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, errText(img))
		}
		return outcome{took: at.Sub(start)}, nil
	}
}
