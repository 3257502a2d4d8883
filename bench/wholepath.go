package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quantix/cloudimages/nodeauth"
)

// benchWholePath measures what the watch's long-poll of the agent
// (FeatureLongPoll) changes, side by side with the old polling once a
// second in the same run (the agents' proxies hide long_poll from the
// worker for the polling runs):
//   - the big file through the whole path, API POST → READY, against curl;
//   - node finished → READY (the agent's finished_at to the image's
//     ready_at), over sequential small downloads;
//   - the agent requests per download over many concurrent downloads.
func (b *bench) benchWholePath(ctx context.Context, many int) {
	const part = "wholepath"
	if !b.needControl(part) {
		return
	}
	if len(b.stack.agents) < 2 {
		b.rep.skip(part, "needs two agents")
		return
	}
	defer b.hideLongPoll(false)
	b.wholePathBig(ctx, part)
	small, err := makeSource(b.mirror.dir, "small-1M.img", scaleFileSize)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	b.finishedToReady(ctx, part, small, b.n)
	b.requestsPerDownload(ctx, part, small, many)
}

// hideLongPoll makes the agents' proxies hide (or show again) long_poll
// from the worker: it then polls them as before the feature.
func (b *bench) hideLongPoll(hide bool, agents ...*agent) {
	if len(agents) == 0 {
		agents = b.stack.agents
	}
	for _, a := range agents {
		a.proxy.hideLongPoll.Store(hide)
	}
}

// wholePathBig is the big file through the API on node-1 with long-polls
// and on node-2 polled, against curl, interleaved over rounds.
func (b *bench) wholePathBig(ctx context.Context, part string) {
	src := b.big
	url := b.mirror.fileURL(src.Name, "", 0)
	out := filepath.Join(b.dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	dst := filepath.Join(out, src.Name)
	curl := func(ctx context.Context, _ int) (outcome, error) {
		defer os.Remove(dst)
		o, _, err := timed(ctx, "curl", "-sS", "--fail", "-o", dst, url)
		return o, err
	}
	polled := b.stack.agents[1]
	b.hideLongPoll(true, polled)
	defer b.hideLongPoll(false, polled)
	cs := []*contestant{
		{name: "curl -o", run: curl},
		{name: "whole path API→READY, long-poll", run: b.wholePathOn(b.stack.agents[0], src, url)},
		{name: "whole path API→READY, polled once a second", run: b.wholePathOn(polled, src, url)},
	}
	for r := 0; r < b.rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			if c.err != nil || ctx.Err() != nil {
				continue
			}
			settle()
			o, err := c.run(ctx, r)
			if err != nil {
				c.err = err
				continue
			}
			c.times = append(c.times, o.took)
			if c.byRnd == nil {
				c.byRnd = map[int]time.Duration{}
			}
			c.byRnd[r] = o.took
		}
	}
	b.rep.add(part, "file", fmt.Sprintf("%s, %d rounds; median rate, median of per-round ratios to curl", mib(src.Size), b.rounds))
	for _, c := range cs {
		if c.err != nil {
			b.rep.goal(part, c.name, "failed", "", false)
			b.rep.note("%v", c.err)
			continue
		}
		x := pairedRatio(cs[0], c)
		value := fmt.Sprintf("%s (%s)", rate(src.Size, median(c.times)), ratio(x))
		if strings.HasSuffix(c.name, "long-poll") {
			b.rep.goal(part, c.name, value, "≥ 0.90× curl", x >= 0.9)
		} else {
			b.rep.add(part, c.name, value)
		}
		b.rep.note("times %s", durations(c.times))
	}
}

// wholePathOn is wholePath pinned to agent a's local pool.
func (b *bench) wholePathOn(a *agent, src source, url string) func(context.Context, int) (outcome, error) {
	ac := newAPIClient(b.stack.apiURL)
	return func(ctx context.Context, r int) (outcome, error) {
		req := map[string]any{"url": url + "?whole=" + a.id + "-" + strconv.Itoa(r), "name": fmt.Sprintf("bench-wholepath-%s-%d", a.id, r),
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

// finishedToReady downloads n small files one after the other on node-1
// (long-poll) and node-2 (polled), interleaved, and reports the time from
// the agent's finished_at to the image's ready_at.
func (b *bench) finishedToReady(ctx context.Context, part string, src source, n int) {
	ac := newAPIClient(b.stack.apiURL)
	longPolled, polled := b.stack.agents[0], b.stack.agents[1]
	b.hideLongPoll(true, polled)
	defer b.hideLongPoll(false, polled)
	lags := map[*agent][]time.Duration{}
	var errs []string
	for i := 0; i < n && ctx.Err() == nil; i++ {
		for _, a := range []*agent{longPolled, polled} {
			lag, err := b.oneSmall(ctx, ac, a, src, i)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			lags[a] = append(lags[a], lag)
		}
	}
	for _, a := range []*agent{longPolled, polled} {
		l := lags[a]
		if len(l) == 0 {
			b.rep.goal(part, "node finished → READY", "failed", "", false)
			continue
		}
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		value := fmt.Sprintf("p50 %s, p90 %s, max %s (%d downloads)", ms(l[len(l)/2]), ms(l[len(l)*9/10]), ms(l[len(l)-1]), len(l))
		if a == longPolled {
			b.rep.goal(part, "node finished → READY, long-poll", value, "p50 < 50 ms", l[len(l)/2] < 50*time.Millisecond)
		} else {
			b.rep.add(part, "node finished → READY, polled once a second", value)
		}
	}
	b.rep.note("%s", joinNonEmpty("1 MiB files at 256–410 KiB/s one after the other; the agent's finished_at to the image's ready_at (both this machine's clock)", errSummary(errs)))
}

// lagRate trickles finishedToReady's files: about 4 s each, so that on a
// busy machine too the watch has started well before the node finishes.
const lagRate = 256 << 10

// oneSmall downloads src on agent a through the API and returns the time
// from the agent's finished_at to the image's ready_at.
func (b *bench) oneSmall(ctx context.Context, ac *apiClient, a *agent, src source, i int) (time.Duration, error) {
	name := fmt.Sprintf("lag-%s-%d.img", a.id, i)
	// Trickled, so that the node finishes while the watch follows it (an
	// instant download ends before the watch starts).
	// Rates of 1.0–1.6× lagRate spread the end over the second between
	// two polls, which one rate would pin to one phase of the poll.
	rate := int64(lagRate) * int64(10+i%7) / 10
	img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(name, src.Name, rate), "name": fmt.Sprintf("lag-%s-%d", a.id, i),
		"checksum": src.Checksum(), "pool_id": a.local, "node_id": a.id})
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	img, _, err = ac.waitImage(wctx, img.ID, 20*time.Millisecond)
	defer ac.DeleteImage(context.Background(), img.ID)
	if err != nil {
		return 0, err
	}
	if img.Status != "READY" || img.ReadyAt == nil {
		return 0, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, errText(img))
	}
	d, err := a.client().Download(ctx, img.ID)
	if err != nil || d.FinishedAt == nil {
		return 0, fmt.Errorf("agent %s: download %s: %v (finished_at %v)", a.id, img.ID, err, d.FinishedAt)
	}
	return img.ReadyAt.Sub(*d.FinishedAt), nil
}

// requestsPerDownload starts many small throttled downloads at once on
// the shared pool, first with long-polls and then polled, and reports the
// agents' requests per download (their own count, all routes, health
// checks included) and the watch's GETs per download (the proxies').
func (b *bench) requestsPerDownload(ctx context.Context, part string, src source, n int) {
	for _, hide := range []bool{false, true} {
		if ctx.Err() != nil {
			return
		}
		b.hideLongPoll(hide)
		label := "long-poll"
		if hide {
			label = "polled once a second"
		}
		before := b.agentRequests()
		ids, ready, took := b.manyDownloads(ctx, src, n, label)
		after := b.agentRequests()
		per := float64(after-before) / float64(max(len(ids), 1))
		value := fmt.Sprintf("%.1f agent requests, %s watch GETs per download; %d of %d READY in %.0fs", per, b.pollsPerDownload(ids), ready, n, took.Seconds())
		b.rep.add(part, fmt.Sprintf("%d downloads at once, %s", n, label), value)
	}
	b.rep.note("1 MiB files trickled at %d KiB/s (4 s each) into the pool the 4 agents share; agent requests are the agents' cloudimages_nodeagent_http_requests_total", scaleRate>>10)
}

// manyDownloads posts n downloads at once and waits for them all.
func (b *bench) manyDownloads(ctx context.Context, src source, n int, label string) (ids []string, ready int, took time.Duration) {
	ac := newAPIClient(b.stack.apiURL)
	start := time.Now()
	ids = make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	tag := strings.ReplaceAll(label, " ", "-")
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("req-%s-%d.img", tag, i)
			img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(name, src.Name, scaleRate),
				"name": fmt.Sprintf("req-%s-%d", tag, i), "checksum": src.Checksum(), "pool_id": sharedPool})
			if err == nil {
				mu.Lock()
				ids[i] = img.ID
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	status, _ := b.waitAll(ctx, ac, ids, 2*time.Minute+time.Duration(n)*100*time.Millisecond)
	took = time.Since(start)
	var wgDel sync.WaitGroup
	for _, id := range ids {
		if id == "" {
			continue
		}
		wgDel.Add(1)
		sem <- struct{}{}
		go func() {
			defer wgDel.Done()
			defer func() { <-sem }()
			ac.DeleteImage(context.Background(), id)
		}()
	}
	wgDel.Wait()
	kept := ids[:0]
	for _, id := range ids {
		if id != "" {
			kept = append(kept, id)
		}
	}
	return kept, status["READY"], took
}

var requestsLine = regexp.MustCompile(`(?m)^cloudimages_nodeagent_http_requests_total\{.*\} (\S+)$`)

// agentRequests is the sum of the agents' request counters.
func (b *bench) agentRequests() int64 {
	var total float64
	for _, a := range b.stack.agents {
		req, _ := http.NewRequest(http.MethodGet, "http://"+a.addr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+nodeauth.Credential(nodeToken, a.id))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var sb strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		for _, m := range requestsLine.FindAllStringSubmatch(sb.String(), -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
	}
	return int64(total)
}
