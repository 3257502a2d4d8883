package main

import (
	"context"
	"fmt"
	"time"
)

// failoverSize and failoverRate make the failover download take about
// 20s, so it is still running when its node dies at the halfway mark.
const (
	failoverSize = 1 << 30
	failoverRate = 50 << 20
)

// benchFailover starts a 1 GiB download on the shared pool, preferring
// node-1, SIGKILLs node-1 at 50%, and measures how long until the mirror
// sends bytes again (to another node) and how much was sent twice.
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
	victim := b.stack.agents[0]
	ac := newAPIClient(b.stack.apiURL)
	name := "failover.img"
	img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(name, src.Name, failoverRate),
		"name": "failover", "checksum": src.Checksum(), "pool_id": sharedPool, "node_id": victim.id})
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer ac.DeleteImage(context.Background(), img.ID)
	if err := waitFor(ctx, 2*time.Minute, func() bool { return b.mirror.bytesFor(name) >= src.Size/2 }); err != nil {
		b.rep.skip(part, fmt.Sprintf("the download did not reach 50%% (%s served): %v", mib(b.mirror.bytesFor(name)), err))
		return
	}
	starts := victim.proxy.startRequests()[img.ID]
	victim.p.Kill()
	killedAt := time.Now()
	servedAtKill := b.mirror.bytesFor(name)
	var flowAt time.Time
	err = waitFor(ctx, 3*time.Minute, func() bool {
		for _, s := range b.mirror.servedFor(name) {
			if _, first := s.snapshot(); s.Start.After(killedAt) && !first.IsZero() {
				flowAt = first
				return true
			}
		}
		return false
	})
	if err != nil {
		b.rep.goal(part, "kill node at 50% → bytes flow again", "never", "", false)
		b.rep.note("%v; node-1 saw %d start request(s)", err, len(starts))
		b.restart(victim)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	final, _, err := ac.waitImage(wctx, img.ID, 100*time.Millisecond)
	total := b.mirror.bytesFor(name)
	b.restart(victim)
	b.rep.add(part, "kill node at 50% → bytes flow again", fmt.Sprintf("%.1f s", flowAt.Sub(killedAt).Seconds()))
	b.rep.note("worker defaults (node grace 30s, poll 1s); %s served when killed", mib(servedAtKill))
	switch {
	case err != nil:
		b.rep.goal(part, "image after failover", "not terminal", "READY", false)
		b.rep.note("%v", err)
		return
	case final.Status != "READY":
		b.rep.goal(part, "image after failover", final.Status, "READY", false)
		b.rep.note("%s", errText(final))
		return
	}
	b.rep.goal(part, "image after failover", "READY on "+final.NodeID, "READY", true)
	again := total - src.Size
	b.rep.add(part, "bytes downloaded twice", fmt.Sprintf("%s (%.1f%% of the file)", mib(again), 100*float64(again)/float64(src.Size)))
	b.rep.note("%s served in %d responses", mib(total), len(b.mirror.servedFor(name)))
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
