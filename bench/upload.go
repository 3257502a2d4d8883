package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/tusclient"
)

// benchUpload puts the big source file into a pool the way a user with the
// file would: `curl -T` to a plain file server that only writes what it
// gets (the baseline), against the tus upload through the API to a node
// agent (hashed, synced, verified, published) with the Go client that
// `cloudimages images upload` uses — to the end of the bytes, and to READY.
func (b *bench) benchUpload(ctx context.Context) {
	const part = "upload"
	if !b.needControl(part) {
		return
	}
	src := b.big
	out := filepath.Join(b.dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	plain, err := startPutServer(out)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer plain.Close()
	dst := filepath.Join(out, src.Name)
	curl := func(ctx context.Context, _ int) (outcome, error) {
		defer os.Remove(dst)
		o, _, err := timed(ctx, "curl", "-sS", "--fail", "-T", src.Path, "http://"+plain.Addr().String()+"/"+src.Name)
		return o, err
	}
	// The agents of the other parts sit behind the bench's HTTP proxy,
	// which would add a hop to every uploaded byte: this one is registered
	// at its own address, as agents are in production.
	a, err := b.stack.startAgent("node-up", b.stack.bin, 4)
	if err != nil {
		b.rep.skip(part, "agent: "+err.Error())
		return
	}
	defer func() {
		_ = a.p.Stop()
		a.proxy.close()
	}()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = launch.Register(rctx, newAPIClient(b.stack.apiURL).Client, []launch.Node{{ID: a.id, Address: a.addr}}, []launch.Pool{{ID: a.local, NodeIDs: []string{a.id}}})
	cancel()
	if err != nil {
		b.rep.skip(part, "register the agent: "+err.Error())
		return
	}
	cpu := map[string][]time.Duration{}
	var acked = map[int]time.Duration{}
	cs := []*contestant{
		{name: "curl -T to a plain file server", run: curl},
		{name: "tus via API → node, to READY", run: b.tusUpload(a, src, acked, cpu)},
	}
	runRounds(ctx, cs, b.rounds)
	b.rep.add(part, "file", fmt.Sprintf("%s, %d rounds; median rate, median of per-round ratios to curl -T", mib(src.Size), b.rounds))
	for _, c := range cs {
		if c.err != nil {
			b.rep.goal(part, c.name, "failed", "", false)
			b.rep.note("%v", c.err)
			continue
		}
		x := pairedRatio(cs[0], c)
		value := fmt.Sprintf("%s (%s)", rate(src.Size, median(c.times)), ratio(x))
		if c == cs[1] {
			b.rep.goal(part, c.name, value, "≥ 0.85× curl -T", x >= 0.85)
		} else {
			b.rep.add(part, c.name, value)
		}
		b.rep.note("%s", "times "+durations(c.times))
	}
	for _, who := range []string{"api", "agent"} {
		if m := median(cpu[who]); m > 0 {
			b.rep.add(part, "CPU of the "+who+" per GiB uploaded", fmt.Sprintf("%.2fs", m.Seconds()*float64(1<<30)/float64(src.Size)))
		}
	}
	if cs[1].err == nil && len(acked) > 0 {
		var ts []time.Duration
		for _, d := range acked {
			ts = append(ts, d)
		}
		b.rep.add(part, "tus via API → node, last byte acknowledged", rate(src.Size, median(ts)))
	}
}

// tusUpload uploads the source file through the API into a's local pool,
// waits for READY, and deletes the image; acked records, by round, when
// the last byte was acknowledged (in the pool, synced).
func (b *bench) tusUpload(a *agent, src source, acked map[int]time.Duration, cpu map[string][]time.Duration) func(context.Context, int) (outcome, error) {
	ac := newAPIClient(b.stack.apiURL)
	return func(ctx context.Context, r int) (outcome, error) {
		c := &tusclient.Client{BaseURL: b.stack.apiURL, StateDir: filepath.Join(b.dir, "tus-state")}
		apiPid, agentPid := b.stack.api.Pid(), a.p.Pid()
		apiCPU, agentCPU := cpuTime(apiPid), cpuTime(agentPid)
		start := time.Now()
		res, err := c.Do(ctx, tusclient.Upload{Path: src.Path, PoolID: a.local, Name: "bench-upload-" + strconv.Itoa(r) + ".img",
			Checksum: src.Checksum(), Format: "raw"}, nil)
		if err != nil {
			return outcome{}, err
		}
		acked[r] = time.Since(start)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		img, at, err := ac.waitImage(wctx, res.ImageID, 10*time.Millisecond)
		defer ac.DeleteImage(context.Background(), res.ImageID)
		if err != nil {
			return outcome{}, err
		}
		if img.Status != "READY" {
			return outcome{}, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, errText(img))
		}
		cpu["api"] = append(cpu["api"], cpuTime(apiPid)-apiCPU)
		cpu["agent"] = append(cpu["agent"], cpuTime(agentPid)-agentCPU)
		return outcome{took: at.Sub(start)}, nil
	}
}

// startPutServer serves PUT /NAME into dir: the plainest file server,
// which writes what it receives and nothing else.
func startPutServer(dir string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			http.Error(w, "PUT only", http.StatusMethodNotAllowed)
			return
		}
		f, err := os.Create(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, err = io.Copy(f, r.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			fmt.Fprintln(os.Stderr, "bench: put server:", err)
		}
	}()
	return ln, nil
}
