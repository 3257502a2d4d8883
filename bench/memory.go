package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const (
	memFileSize = 128 << 20
	memRate     = 32 << 20 // 4s a download, so all 8 overlap
	memJobs     = 8
	sseClients  = 200
)

// benchMemory measures a fresh node agent's peak RSS while it runs 8
// downloads at once, and the API's RSS while 200 clients follow one
// image's event stream.
func (b *bench) benchMemory(ctx context.Context) {
	const part = "memory"
	src, err := makeSource(b.mirror.dir, "mem-128M.img", memFileSize)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	b.agentMemory(ctx, part, src)
	if b.needControl(part) {
		b.sseMemory(ctx, part, src)
	}
}

func (b *bench) agentMemory(ctx context.Context, part string, src source) {
	pool := filepath.Join(b.dir, "pools", "mem")
	os.MkdirAll(pool, 0o755)
	spec := &launch.Agent{Bin: b.stack.bin, NodeID: "node-mem", Token: nodeToken, MaxConcurrent: memJobs,
		AllowPrivateNetworks: true, Pools: []nodeagent.PoolDir{{ID: "mem", Dir: pool}}}
	p := spec.Process("node-mem", b.stack.logPath("node-mem"))
	err := launch.StartOnFreePort(ctx, p, func() error {
		addr, err := freeAddr()
		spec.Listen = addr
		spec.Apply(p)
		return err
	})
	if err != nil {
		b.rep.skip(part, firstLine(err.Error()))
		return
	}
	defer p.Stop()
	c := spec.Client()
	idle, _ := mem(p)
	var wg sync.WaitGroup
	errs := make([]error, memJobs)
	for i := 0; i < memJobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("mem-%d.img", i)
			d, err := runAgentJob(ctx, c, agentclient.DownloadRequest{ID: fmt.Sprintf("mem-%d", i), URL: b.mirror.fileURL(name, src.Name, memRate),
				PoolID: "mem", FileName: name, Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw"}, 100*time.Millisecond)
			if err == nil && d.State != agentclient.StateCompleted {
				err = fmt.Errorf("download %s ended %s: %v", d.ID, d.State, d.Error)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	m, err := mem(p)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			first = err
		}
	}
	b.rep.goal(part, "node agent peak RSS, 8 downloads at once", mib(m.Peak), "< 64 MiB", m.Peak < 64<<20 && failed == 0)
	b.rep.note("%s", joinNonEmpty(fmt.Sprintf("idle %s", mib(idle.RSS)), errNote(failed, first)))
}

func errNote(failed int, first error) string {
	if failed == 0 {
		return ""
	}
	return fmt.Sprintf("%d downloads failed, first: %v", failed, first)
}

// sseMemory follows one slow download with 200 event-stream clients.
func (b *bench) sseMemory(ctx context.Context, part string, src source) {
	ac := newAPIClient(b.stack.apiURL)
	a := b.stack.agents[len(b.stack.agents)-1]
	img, _, err := ac.CreateImage(ctx, map[string]any{"url": b.mirror.fileURL("sse.img", src.Name, 4<<20),
		"name": "sse", "checksum": src.Checksum(), "pool_id": a.local})
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer ac.DeleteImage(context.Background(), img.ID)
	before, _ := mem(b.stack.api)
	sctx, cancel := context.WithCancel(ctx)
	var events, open atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < sseClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(sctx, http.MethodGet, b.stack.apiURL+"/v1/images/"+img.ID+"/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return
			}
			open.Add(1)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data:") {
					events.Add(1)
				}
			}
		}()
	}
	peak := samplePeak(b.stack.api, 100*time.Millisecond)
	time.Sleep(5 * time.Second)
	during, _ := mem(b.stack.api)
	p := peak.stop()
	cancel()
	wg.Wait()
	b.rep.add(part, "API RSS, 200 SSE clients", fmt.Sprintf("%s (peak %s)", mib(during.RSS), mib(p)))
	b.rep.note("%s before; %d streams open, %d events in 5s", mib(before.RSS), open.Load(), events.Load())
}
