package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// failoverSize and failoverRate make the failover download take about
// 20s, so it is still running when its node dies at the halfway mark.
const (
	failoverSize = 1 << 30
	failoverRate = 50 << 20
)

// workerGrace is the worker's --node-grace, its default: how long a node
// that does not answer (frozen, partitioned) is waited for.
const workerGrace = 30 * time.Second

// failoverGoals: bytes flow again on another node within 5 s of a kill -9,
// within the grace + 5 s of a freeze, and at most 2 % of the file is
// fetched twice.
const (
	killedGoal     = 5 * time.Second
	frozenGoal     = workerGrace + 5*time.Second
	twiceGoalRatio = 0.02
)

// failoverCase is one way the node doing a download stops mid-way.
type failoverCase struct {
	name  string // "kill -9", "SIGSTOP"
	image string // the image's name, one per case; ".img" is its name on the mirror
	goal  time.Duration
	// stop stops the agent; resume brings it back once the image is READY.
	stop   func(a *agent) error
	resume func(b *bench, a *agent)
}

// benchFailover starts a 1 GiB download on the shared pool, preferring
// node-1, stops node-1 at 50% — killed (-9: its port refuses) and frozen
// (SIGSTOP: its port accepts and never answers) — and measures how long
// until the mirror sends bytes again (to another node) and how much was
// sent twice.
func (b *bench) benchFailover(ctx context.Context) {
	const part = "failover"
	if !b.needControl(part) {
		return
	}
	src, err := makeSource(b.mirror.dir, "failover-1G.img", failoverSize)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	cases := []failoverCase{
		{name: "kill -9", image: "failover-kill", goal: killedGoal,
			stop: func(a *agent) error {
				a.p.Kill()
				// The proxy stands for the node's address: it goes with
				// its agent, so the worker finds the port closed.
				a.proxy.close()
				return nil
			},
			resume: func(b *bench, a *agent) {
				if err := a.proxy.reopen(); err != nil {
					b.rep.add(part, "reopen the proxy of "+a.id, "failed")
					b.rep.note("%v", err)
				}
				b.restart(a)
			}},
		{name: "SIGSTOP", image: "failover-stop", goal: frozenGoal,
			stop: func(a *agent) error { return syscall.Kill(a.p.Pid(), syscall.SIGSTOP) },
			resume: func(b *bench, a *agent) {
				// Woken, it finds its job taken over (fenced) and stops it.
				if err := syscall.Kill(a.p.Pid(), syscall.SIGCONT); err != nil {
					b.rep.add(part, "wake "+a.id, "failed")
					b.rep.note("%v", err)
				}
			}},
	}
	for _, c := range cases {
		if ctx.Err() != nil {
			return
		}
		b.failoverOnce(ctx, part, src, c)
	}
}

// failoverOnce runs one case of benchFailover.
func (b *bench) failoverOnce(ctx context.Context, part string, src source, c failoverCase) {
	victim := b.stack.agents[0]
	ac := newAPIClient(b.stack.apiURL)
	name := c.image + ".img"
	img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(name, src.Name, failoverRate),
		"name": c.image, "checksum": src.Checksum(), "pool_id": sharedPool, "node_id": victim.id})
	if err != nil {
		b.rep.skip(part, c.name+": "+err.Error())
		return
	}
	defer ac.DeleteImage(context.Background(), img.ID)
	if err := waitFor(ctx, 2*time.Minute, func() bool { return b.mirror.bytesFor(name) >= src.Size/2 }); err != nil {
		b.rep.skip(part, fmt.Sprintf("%s: the download did not reach 50%% (%s served): %v", c.name, mib(b.mirror.bytesFor(name)), err))
		return
	}
	starts := victim.proxy.startRequests()[img.ID]
	if err := c.stop(victim); err != nil {
		b.rep.skip(part, fmt.Sprintf("%s: %v", c.name, err))
		return
	}
	stoppedAt := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			c.resume(b, victim)
		}
	}
	defer resume()
	servedAtStop := b.mirror.bytesFor(name)
	metric := c.name + " of the node at 50% → bytes flow again"
	goal := fmt.Sprintf("≤ %s", c.goal)
	var flowAt time.Time
	err = waitFor(ctx, 3*time.Minute, func() bool {
		for _, s := range b.mirror.servedFor(name) {
			if _, first := s.snapshot(); s.Start.After(stoppedAt) && !first.IsZero() {
				flowAt = first
				return true
			}
		}
		return false
	})
	if err != nil {
		b.rep.goal(part, metric, "never", goal, false)
		b.rep.note("%v; node-1 saw %d start request(s)", err, len(starts))
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	final, _, err := ac.waitImage(wctx, img.ID, 100*time.Millisecond)
	// Counted before a frozen node wakes: what it fetches then is thrown
	// away by its fencing, after the image is READY.
	total := b.mirror.bytesFor(name)
	responses := len(b.mirror.servedFor(name))
	resume()
	took := flowAt.Sub(stoppedAt)
	b.rep.goal(part, metric, fmt.Sprintf("%.1f s", took.Seconds()), goal, took <= c.goal)
	b.rep.note("worker defaults (node grace %s, poll 1s); %s served when stopped", workerGrace, mib(servedAtStop))
	switch {
	case err != nil:
		b.rep.goal(part, c.name+": image after failover", "not terminal", "READY", false)
		b.rep.note("%v", err)
		return
	case final.Status != "READY":
		b.rep.goal(part, c.name+": image after failover", final.Status, "READY", false)
		b.rep.note("%s", errText(final))
		return
	}
	b.rep.goal(part, c.name+": image after failover", "READY on "+final.NodeID, "READY", final.NodeID != victim.id)
	again := total - src.Size
	ratio := float64(again) / float64(src.Size)
	b.rep.goal(part, c.name+": bytes downloaded twice", fmt.Sprintf("%s (%.1f%% of the file)", mib(again), 100*ratio),
		fmt.Sprintf("≤ %.0f%%", 100*twiceGoalRatio), ratio <= twiceGoalRatio)
	b.rep.note("%s served in %d responses", mib(total), responses)
}

func (b *bench) restart(a *agent) {
	if err := b.stack.restartAgent(a); err != nil {
		b.rep.add("failover", "restart "+a.id, "failed")
		b.rep.note("%v", firstLine(err.Error()))
	}
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
