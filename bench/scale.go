package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"
)

const (
	scaleFileSize = 1 << 20
	scaleRate     = 256 << 10 // 4s a file, so the downloads overlap
)

// benchScale starts many small throttled downloads at once on the pool
// shared by the four agents and checks they all end READY, once each, with
// the worker's and API's memory, the workflows' history length and the
// database writes per download.
func (b *bench) benchScale(ctx context.Context) {
	const part = "scale"
	if !b.needControl(part) {
		return
	}
	src, err := makeSource(b.mirror.dir, "small-1M.img", scaleFileSize)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	for _, n := range b.scale {
		if ctx.Err() != nil {
			return
		}
		b.scaleRun(ctx, part+" "+fmt.Sprint(n), src, n)
	}
}

func (b *bench) scaleRun(ctx context.Context, part string, src source, n int) {
	ac := newAPIClient(b.stack.apiURL)
	workerPeak, apiPeak := samplePeak(b.stack.worker, 100*time.Millisecond), samplePeak(b.stack.api, 100*time.Millisecond)
	writesBefore, writesErr := rowWrites(ctx, b.stack.dbURL)
	cpuBefore := b.stack.cpu()
	start := time.Now()
	ids := make([]string, n)
	var postErrs []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("scale-%d-%d.img", n, i)
			img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL(name, src.Name, scaleRate),
				"name": fmt.Sprintf("scale-%d-%d", n, i), "checksum": src.Checksum(), "pool_id": sharedPool})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				postErrs = append(postErrs, err.Error())
				return
			}
			ids[i] = img.ID
		}()
	}
	wg.Wait()
	posted := time.Since(start)
	timeout := 2*time.Minute + time.Duration(n)*100*time.Millisecond
	status, listErr := b.waitAll(ctx, ac, ids, timeout)
	took := time.Since(start)
	wPeak, aPeak := workerPeak.stop(), apiPeak.stop()
	cpuAfter := b.stack.cpu()

	ready := status["READY"]
	b.rep.goal(part, "images READY", fmt.Sprintf("%d of %d in %.0fs", ready, n, took.Seconds()), "all", ready == n)
	b.rep.note("%s", joinNonEmpty(summarize(status), fmt.Sprintf("POSTs took %.1fs", posted.Seconds()), errSummary(postErrs), listErr))
	dupNodes, dupServes := b.duplicates(ids, n)
	b.rep.goal(part, "duplicate downloads", fmt.Sprintf("%d started on 2+ nodes, %d served 2+ times", dupNodes, dupServes), "0", dupNodes == 0 && dupServes == 0)
	files, _ := filepath.Glob(filepath.Join(b.dir, "pools", sharedPool, "cloud-images", fmt.Sprintf("scale-%d-*", n)))
	b.rep.note("%d files published", len(files))
	b.rep.add(part, "CPU per download", cpuBefore.perDownload(cpuAfter, n))
	b.rep.note("%.1f downloads/s; the machine has %d cores", float64(ready)/took.Seconds(), runtime.NumCPU())
	b.rep.add(part, "worker / API peak RSS", fmt.Sprintf("%s / %s", mib(wPeak), mib(aPeak)))
	b.rep.add(part, "history events per workflow", b.historyLengths(ctx, ids))
	b.rep.add(part, "node polls (heartbeat calls) per download", b.pollsPerDownload(ids))
	b.rep.note("one RecordHeartbeat a poll; the SDK sends at most one per 0.8× heartbeat timeout")
	if writesErr != nil {
		b.rep.add(part, "database row writes per download", "n/a")
		b.rep.note("%v (database %s)", writesErr, dbKind(b.stack.dbURL))
		return
	}
	time.Sleep(2 * time.Second) // statistics reach pg_stat_user_tables within a second or so
	writesAfter, err := rowWrites(ctx, b.stack.dbURL)
	if err == nil && n > 0 {
		b.rep.add(part, "database row writes per download", fmt.Sprintf("%.1f", float64(writesAfter-writesBefore)/float64(n)))
		b.rep.note("inserts+updates+deletes in pg_stat_user_tables")
	}
}

// waitAll polls the shared pool's image list until every id is terminal
// or the timeout passes, and counts the statuses.
func (b *bench) waitAll(ctx context.Context, ac *apiClient, ids []string, timeout time.Duration) (map[string]int, string) {
	want := map[string]bool{}
	for _, id := range ids {
		if id != "" {
			want[id] = true
		}
	}
	deadline := time.Now().Add(timeout)
	var status map[string]int
	var lastErr error
	for {
		imgs, err := ac.images(ctx, sharedPool)
		if err != nil {
			lastErr = err
		} else {
			status = map[string]int{}
			terminal := 0
			for _, img := range imgs {
				if want[img.ID] {
					status[img.Status]++
					if img.Terminal() {
						terminal++
					}
				}
			}
			if terminal == len(want) {
				return status, ""
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			msg := fmt.Sprintf("gave up waiting after %s", timeout)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last list error: %v)", lastErr)
			}
			return status, msg
		}
		time.Sleep(time.Second)
	}
}

// duplicates counts images whose download started on more than one node
// (seen by the agents' proxies) and files the mirror served more than once.
func (b *bench) duplicates(ids []string, n int) (multiNode, multiServe int) {
	nodes := map[string]int{}
	for _, a := range b.stack.agents {
		for id := range a.proxy.startRequests() {
			nodes[id]++
		}
	}
	for _, id := range ids {
		if nodes[id] > 1 {
			multiNode++
		}
	}
	for name, c := range b.mirror.countByName() {
		var i int
		if _, err := fmt.Sscanf(name, fmt.Sprintf("scale-%d-%%d.img", n), &i); err == nil && c > 1 {
			multiServe++
		}
	}
	return multiNode, multiServe
}

// pollsPerDownload is the mean number of GET /v1/downloads/{id} the
// agents' proxies saw per image.
func (b *bench) pollsPerDownload(ids []string) string {
	total, n := 0, 0
	for _, id := range ids {
		if id == "" {
			continue
		}
		n++
		for _, a := range b.stack.agents {
			total += a.proxy.pollCount(id)
		}
	}
	if n == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", float64(total)/float64(n))
}

// historyLengths describes up to 50 of the workflows and reports the
// median and largest history length.
func (b *bench) historyLengths(ctx context.Context, ids []string) string {
	var lens []int
	for _, id := range ids {
		if id == "" {
			continue
		}
		resp, err := b.stack.tclient.DescribeWorkflowExecution(ctx, "image-"+id, "")
		if err != nil {
			continue
		}
		lens = append(lens, int(resp.GetWorkflowExecutionInfo().GetHistoryLength()))
		if len(lens) == 50 {
			break
		}
	}
	if len(lens) == 0 {
		return "n/a"
	}
	sort.Ints(lens)
	return fmt.Sprintf("median %d, max %d (of %d workflows)", lens[len(lens)/2], lens[len(lens)-1], len(lens))
}

func summarize(status map[string]int) string {
	var keys []string
	for k := range status {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s %d ", k, status[k])
	}
	return s
}

func errSummary(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return fmt.Sprintf("%d POSTs failed, first: %s", len(errs), errs[0])
}

func dbKind(u string) string {
	if len(u) >= 8 && u[:8] == "postgres" {
		return "PostgreSQL"
	}
	return "SQLite"
}
