package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/quantix/cloudimages/api"
)

// benchOverhead measures what the control plane adds around a download:
// POST /v1/images → the node receives its start request (seen by the
// proxy in front of the agent), and the agent's finished_at → READY first
// visible in GET /v1/images/{id} (polled every 10ms). Small unthrottled
// files, four in flight, one per node's local pool.
func (b *bench) benchOverhead(ctx context.Context) {
	const part = "overhead"
	if !b.needControl(part) {
		return
	}
	src, err := makeSource(b.mirror.dir, "small-1M.img", 1<<20)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	ac := newAPIClient(b.stack.apiURL)
	var (
		mu            sync.Mutex
		toStart, toRd []time.Duration
		toWorkflow    []time.Duration
		steps         []stepTimes
		failures      []string
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		a := b.stack.agents[w%len(b.stack.agents)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s, r, img, posted, err := b.oneOverhead(ctx, ac, a, src, i)
				var st stepTimes
				if err == nil {
					st, err = b.workflowSteps(ctx, img.WorkflowID)
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					toStart, toRd = append(toStart, s), append(toRd, r)
					toWorkflow, steps = append(toWorkflow, st.started.Sub(posted)), append(steps, st)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < b.n && ctx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.rep.add(part, "downloads", fmt.Sprintf("%d of %d READY", len(toStart), b.n))
	if len(failures) > 0 {
		b.rep.note("%d failed, first: %s", len(failures), failures[0])
	}
	if len(toStart) == 0 {
		return
	}
	b.rep.add(part, "POST /v1/images → node start request", fmt.Sprintf("p50 %s, p99 %s", ms(percentile(toStart, 50)), ms(percentile(toStart, 99))))
	b.rep.add(part, "  of which POST → workflow started", fmt.Sprintf("p50 %s", ms(percentile(toWorkflow, 50))))
	b.rep.add(part, "  activities, scheduled → completed (p50)", stepSummary(steps))
	b.rep.add(part, "node finished → READY in the API", fmt.Sprintf("p50 %s, p99 %s", ms(percentile(toRd, 50)), ms(percentile(toRd, 99))))
	b.rep.note("includes the worker's poll of the node (1s by default)")
}

func (b *bench) oneOverhead(ctx context.Context, ac *apiClient, a *agent, src source, i int) (toStart, toReady time.Duration, img api.Image, posted time.Time, err error) {
	name := fmt.Sprintf("overhead-%d.img", i)
	req := map[string]any{"url": b.mirror.fileURL(name, src.Name, 0), "name": fmt.Sprintf("overhead-%d", i),
		"checksum": src.Checksum(), "pool_id": a.local}
	posted = time.Now()
	img, _, err = ac.CreateImage(ctx, req)
	if err != nil {
		return 0, 0, img, posted, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	img, readyAt, err := ac.waitImage(wctx, img.ID, 10*time.Millisecond)
	if err != nil {
		return 0, 0, img, posted, err
	}
	if img.Status != "READY" {
		return 0, 0, img, posted, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, errText(img))
	}
	starts := a.proxy.startRequests()[img.ID]
	if len(starts) == 0 {
		return 0, 0, img, posted, fmt.Errorf("image %s is READY but node %s saw no start request for it", img.ID, a.id)
	}
	d, err := a.client().Download(ctx, img.ID)
	if err != nil {
		return 0, 0, img, posted, fmt.Errorf("image %s: the node does not know its download: %v", img.ID, err)
	}
	if d.FinishedAt == nil {
		return 0, 0, img, posted, fmt.Errorf("image %s is READY but the node's download is %s", img.ID, d.State)
	}
	return starts[0].Sub(posted), readyAt.Sub(*d.FinishedAt), img, posted, nil
}
