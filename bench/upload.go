package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
)

// benchUpload puts the big source file into a pool the way a user with the
// file would: `curl -T` to a plain file server that only writes what it
// gets (the baseline), against `cloudimages images upload` (the CLI)
// through the API's tus endpoint to a node agent (hashed, synced,
// verified, published) — to the end of the bytes (the CLI exits), and to
// READY. With -compare-bin, the same through that binary's CLI, API and
// agent joins the rounds: before and after a change, side by side.
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
	plain, err := startPutServer(out, false, false)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer plain.Close()
	synced, err := startPutServer(out, true, false)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer synced.Close()
	same, err := startPutServer(out, true, true)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer same.Close()
	dst := filepath.Join(out, src.Name)
	curlTo := func(ln net.Listener) func(context.Context, int) (outcome, error) {
		return func(ctx context.Context, _ int) (outcome, error) {
			defer os.Remove(dst)
			o, _, err := timed(ctx, "curl", "-sS", "--fail", "-T", src.Path, "http://"+ln.Addr().String()+"/"+src.Name)
			return o, err
		}
	}
	sides := []*uploadSide{{name: "CLI via API → node", bin: b.stack.bin, apiURL: b.stack.apiURL, api: b.stack.api}}
	if b.compareBin != "" {
		p, url, err := b.stack.startAPI("api-compare", b.compareBin)
		if err != nil {
			b.rep.note("upload: the -compare-bin API did not start: %v", err)
		} else {
			defer func() { _ = p.Stop() }()
			sides = append(sides, &uploadSide{name: "CLI via API → node, -compare-bin", bin: b.compareBin, apiURL: url, api: p})
		}
	}
	// The agents of the other parts sit behind the bench's HTTP proxy,
	// which would add a hop to every uploaded byte: these are registered
	// at their own addresses, as agents are in production.
	var nodes []launch.Node
	var pools []launch.Pool
	for i, side := range sides {
		a, err := b.stack.startAgent("node-up"+strconv.Itoa(i+1), side.bin, 4)
		if err != nil {
			b.rep.skip(part, "agent: "+err.Error())
			return
		}
		defer func() {
			_ = a.p.Stop()
			a.proxy.close()
		}()
		side.agent = a
		nodes = append(nodes, launch.Node{ID: a.id, Address: a.addr})
		pools = append(pools, launch.Pool{ID: a.local, NodeIDs: []string{a.id}})
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = launch.Register(rctx, newAPIClient(b.stack.apiURL).Client, nodes, pools)
	cancel()
	if err != nil {
		b.rep.skip(part, "register the agents: "+err.Error())
		return
	}
	cs := []*contestant{{name: "curl -T to a plain file server", run: curlTo(plain)}}
	for _, side := range sides {
		cs = append(cs, &contestant{name: side.name + ", to READY", run: b.cliUpload(side, src)})
	}
	// What the disk adds: the upload path syncs the file before it
	// acknowledges the last byte; the plain server never does.
	cs = append(cs, &contestant{name: "curl -T to a file server that fsyncs before it answers", run: curlTo(synced)})
	// The same work as the agent's, in one hop and no more: sha256 of the
	// bytes as they come, and fsync before the answer. What the upload
	// path costs beyond it is the API's hop, the tus protocol, the
	// workflow and the checks.
	sameWork := &contestant{name: "curl -T to a file server that hashes (sha256) and fsyncs", run: curlTo(same)}
	cs = append(cs, sameWork)
	runRounds(ctx, cs, b.rounds)
	b.rep.add(part, "file", fmt.Sprintf("%s, %d rounds; median rate, median of per-round ratios to curl -T", mib(src.Size), b.rounds))
	perGiB := func(d time.Duration) string {
		return fmt.Sprintf("%.2fs", d.Seconds()*float64(1<<30)/float64(src.Size))
	}
	for i, c := range cs {
		if c.err != nil {
			b.rep.goal(part, c.name, "failed", "", false)
			b.rep.note("%v", c.err)
			continue
		}
		x := pairedRatio(cs[0], c)
		value := fmt.Sprintf("%s (%s)", rate(src.Size, median(c.times)), ratio(x))
		if i == 1 {
			b.rep.goal(part, c.name, value, "≥ 0.85× curl -T", x >= 0.85)
		} else {
			b.rep.add(part, c.name, value)
		}
		b.rep.note("%s", "times "+durations(c.times))
		if i == 1 && sameWork.err == nil {
			b.rep.add(part, c.name+", against the server that hashes and fsyncs", ratio(pairedRatio(sameWork, c)))
		}
		if i == 0 {
			if m := median(c.cpu); m > 0 {
				b.rep.add(part, "CPU of curl per GiB", perGiB(m))
			}
		}
		if i == 0 || i > len(sides) {
			continue
		}
		side := sides[i-1]
		if len(side.acked) > 0 {
			b.rep.add(part, side.name+", last byte acknowledged", rate(src.Size, median(side.acked)))
		}
		for _, who := range []string{"cli", "api", "agent"} {
			if m := median(side.cpu[who]); m > 0 {
				b.rep.add(part, side.name+": CPU of the "+who+" per GiB", perGiB(m))
			}
		}
	}
}

// uploadSide is one way through for the upload part: a binary's CLI, its
// API process and its agent.
type uploadSide struct {
	name   string
	bin    string
	apiURL string
	api    *launch.Process
	agent  *agent
	// acked is, by round, when the CLI exited (the last byte in the pool,
	// synced); cpu the CPU time of each process, by round.
	acked []time.Duration
	cpu   map[string][]time.Duration
}

// cliUpload runs `cloudimages images upload` on the source file into the
// side's agent's local pool, waits for READY, and deletes the image.
func (b *bench) cliUpload(side *uploadSide, src source) func(context.Context, int) (outcome, error) {
	ac := newAPIClient(side.apiURL)
	side.cpu = map[string][]time.Duration{}
	return func(ctx context.Context, r int) (outcome, error) {
		apiPid, agentPid := side.api.Pid(), side.agent.p.Pid()
		apiCPU, agentCPU := cpuTime(apiPid), cpuTime(agentPid)
		start := time.Now()
		o, stdout, err := timed(ctx, side.bin, "images", "upload", src.Path, "--pool", side.agent.local,
			"--name", "bench-upload-"+strconv.Itoa(r)+".img", "--checksum", src.Checksum(), "--format", "raw", "--api-url", side.apiURL)
		if err != nil {
			return outcome{}, err
		}
		acked := time.Since(start)
		id, _, _ := strings.Cut(strings.TrimSpace(stdout), " ")
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		img, at, err := ac.waitImage(wctx, id, 10*time.Millisecond)
		defer ac.DeleteImage(context.Background(), id)
		if err != nil {
			return outcome{}, fmt.Errorf("image %q (the CLI printed %q): %w", id, stdout, err)
		}
		if img.Status != "READY" {
			return outcome{}, fmt.Errorf("image %s ended %s: %s", img.ID, img.Status, errText(img))
		}
		side.acked = append(side.acked, acked)
		side.cpu["cli"] = append(side.cpu["cli"], o.cpu)
		side.cpu["api"] = append(side.cpu["api"], cpuTime(apiPid)-apiCPU)
		side.cpu["agent"] = append(side.cpu["agent"], cpuTime(agentPid)-agentCPU)
		return outcome{took: at.Sub(start)}, nil
	}
}

// startPutServer serves PUT /NAME into dir: the plainest file server,
// which writes what it receives and nothing else (with sync, it also
// fsyncs the file before it answers; with hash, it takes the sha256 of
// the bytes on their way to the file).
func startPutServer(dir string, sync, hash bool) (net.Listener, error) {
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
		var to io.Writer = f
		sum := sha256.New()
		if hash {
			to = io.MultiWriter(f, sum)
		}
		_, err = io.Copy(to, r.Body)
		if sync && err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if hash {
			w.Header().Set("X-Sha256", hex.EncodeToString(sum.Sum(nil)))
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
