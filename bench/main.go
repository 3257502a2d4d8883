// Command bench measures cloudimages against the tools it replaces and
// under load, and prints one table: transfer throughput as ratios to curl,
// orchestration overhead, failover, scale, memory, decompression as
// ratios to the tools' shell pipes, and conversion as a ratio to qemu-img
// convert run by hand. `make bench` runs
// it; BENCHMARKS.md records the latest table and how to reproduce it.
//
// Everything runs on this machine over loopback: a local mirror, node
// agent processes, and (for the parts that need the whole path) the
// Temporal dev server, the worker and the API as processes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// bench holds what the parts share.
type bench struct {
	dir    string
	rounds int
	n      int
	scale  []int
	rep    report
	mirror *mirror
	stack  *stack
	big    source
	dropDB func()
	// alt is an agent run from -compare-bin, an extra transfer contestant.
	alt *agent
	// compareBin is -compare-bin (the upload part runs its API and CLI too).
	compareBin string
}

// wholePathMany is -wholepath-many.
var wholePathMany int

// parts are the benchmarks, in the order they run.
var parts = []string{"transfer", "tls", "bandwidth", "overhead", "failover", "scale", "memory", "decompress", "compressed", "convert", "upload", "wholepath", "distribute"}

func main() {
	var (
		size      = flag.Int64("size", 1<<30, "bytes of the transfer benchmark's file")
		rounds    = flag.Int("rounds", 3, "rounds of the transfer benchmark (the median is reported)")
		only      = flag.String("only", strings.Join(parts, ","), "comma-separated parts to run: "+strings.Join(parts, ","))
		n         = flag.Int("n", 100, "downloads measured by the overhead benchmark")
		scale     = flag.String("scale", "300,1000", "concurrent downloads of the scale benchmark, one run per number")
		dir       = flag.String("dir", os.Getenv("BENCH_DIR"), "work dir; kept (with the cached source file) when given, else a temp dir removed at the end")
		database  = flag.String("database", "", "database URL for the API and worker (default: a fresh PostgreSQL database on $"+postgresEnv+" when set, else SQLite in the work dir)")
		concurent = flag.Int("agent-max-concurrent", 32, "--max-concurrent of each node agent")
		compare   = flag.String("compare-bin", "", "another cloudimages binary whose node agent joins the transfer benchmark, and whose CLI, API and agent the upload benchmark (to measure a change)")
		many      = flag.Int("wholepath-many", 1000, "concurrent downloads of the wholepath part's request count, once with long-polls and once polled")
	)
	flag.Parse()
	wholePathMany = *many
	code, err := run(*size, *rounds, *n, *only, *scale, *dir, *database, *compare, *concurent)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(size int64, rounds, n int, only, scaleList, dir, database, compareBin string, maxConcurrent int) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	selected, err := selectParts(only)
	if err != nil {
		return 2, err
	}
	b := &bench{rounds: rounds, n: n, compareBin: compareBin}
	if b.scale, err = parseInts(scaleList); err != nil {
		return 2, fmt.Errorf("-scale: %w", err)
	}
	keep := dir != ""
	if !keep {
		if dir, err = os.MkdirTemp("", "cloudimages-bench-"); err != nil {
			return 1, err
		}
	}
	if b.dir, err = filepath.Abs(dir); err != nil {
		return 1, err
	}
	if err := os.MkdirAll(filepath.Join(b.dir, "logs"), 0o755); err != nil {
		return 1, err
	}
	// Pools and outputs go every run; the source files stay when -dir is given.
	os.RemoveAll(filepath.Join(b.dir, "pools"))
	os.RemoveAll(filepath.Join(b.dir, "out"))
	defer func() {
		os.RemoveAll(filepath.Join(b.dir, "pools"))
		os.RemoveAll(filepath.Join(b.dir, "out"))
		if !keep {
			os.RemoveAll(b.dir)
		}
	}()
	started, loadBefore := time.Now(), loadAverage()
	defer b.tearDown() // also after a failed setUp: it stops what did start
	if err := b.setUp(ctx, size, database, compareBin, maxConcurrent, selected); err != nil {
		return 1, err
	}
	for _, p := range parts {
		if !selected[p] || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s (%s in)\n", p, time.Since(started).Round(time.Second))
		switch p {
		case "transfer":
			b.benchTransfer(ctx)
		case "tls":
			b.benchTLS(ctx)
		case "bandwidth":
			b.benchBandwidth(ctx)
		case "overhead":
			b.benchOverhead(ctx)
		case "failover":
			b.benchFailover(ctx)
		case "scale":
			b.benchScale(ctx)
		case "memory":
			b.benchMemory(ctx)
		case "decompress":
			b.benchDecompress(ctx, size)
		case "compressed":
			b.benchCompressed(ctx, size)
		case "convert":
			b.benchConvert(ctx, size)
		case "upload":
			b.benchUpload(ctx)
		case "wholepath":
			b.benchWholePath(ctx, wholePathMany)
		case "distribute":
			b.benchDistribute(ctx)
		}
	}
	fmt.Printf("\ncloudimages bench — %s — %d CPUs, %s, load average %s at the start and %s at the end, took %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), machineMemory(), loadBefore, loadAverage(), time.Since(started).Round(time.Second))
	b.rep.markdown(os.Stdout)
	if m := b.rep.misses(); m > 0 {
		fmt.Printf("\n%d figure(s) missed their goal.\n", m)
	}
	return 0, nil
}

// setUp writes the source file, starts the mirror, the agents and the
// control plane (a control plane that does not start skips the parts that
// need it, with the reason in the table).
func (b *bench) setUp(ctx context.Context, size int64, database, compareBin string, maxConcurrent int, selected map[string]bool) error {
	srcDir := filepath.Join(b.dir, "src")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return err
	}
	var err error
	if selected["transfer"] || selected["tls"] || selected["bandwidth"] || selected["upload"] || selected["wholepath"] {
		fmt.Fprintf(os.Stderr, "bench: source file of %s in %s\n", mib(size), srcDir)
		if b.big, err = makeSource(srcDir, fmt.Sprintf("big-%d.img", size), size); err != nil {
			return err
		}
	}
	if !needsStack(selected) {
		return nil // the decompress part runs alone
	}
	if b.mirror, err = startMirror(srcDir); err != nil {
		return err
	}
	bin := os.Getenv("CLOUDIMAGES_BIN")
	if bin == "" {
		bin = "bin/cloudimages"
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("no cloudimages binary at %s (run `make build`, or `make bench`): %v", bin, err)
	}
	b.stack = &stack{dir: b.dir, bin: bin, dbURL: database}
	if b.stack.dbURL == "" {
		url, drop, err := freshPostgres(ctx)
		if err != nil {
			return err
		}
		b.dropDB, b.stack.dbURL = drop, url
	}
	if b.stack.dbURL == "" {
		b.stack.dbURL = "sqlite:" + filepath.Join(b.dir, "cloudimages.db")
		os.Remove(filepath.Join(b.dir, "cloudimages.db"))
	}
	if err := b.stack.startAgents(4, maxConcurrent); err != nil {
		return fmt.Errorf("node agents: %w", err)
	}
	if compareBin != "" {
		if b.alt, err = b.stack.startAgent("node-alt", compareBin, maxConcurrent); err != nil {
			return fmt.Errorf("-compare-bin: %w", err)
		}
	}
	cli := os.Getenv("CLOUDIMAGES_TEMPORAL_CLI")
	if cli == "" {
		cli = "bin/temporal"
	}
	if b.stack.controlErr = b.stack.startControlPlane(cli); b.stack.controlErr != nil {
		fmt.Fprintf(os.Stderr, "bench: control plane did not start; parts that need it are skipped:\n%v\n", b.stack.controlErr)
	}
	return nil
}

// needsStack reports whether a selected part needs the mirror, the agents
// or the control plane (all but decompress do).
func needsStack(selected map[string]bool) bool {
	for p := range selected {
		if p != "decompress" {
			return true
		}
	}
	return false
}

func (b *bench) tearDown() {
	if b.stack != nil {
		b.stack.close()
	}
	if b.alt != nil {
		b.alt.p.Stop()
		b.alt.proxy.close()
	}
	if b.mirror != nil {
		b.mirror.close()
	}
	if b.dropDB != nil {
		b.dropDB()
	}
}

// needControl reports whether the control plane runs, and records a skip
// for part when it does not.
func (b *bench) needControl(part string) bool {
	if b.stack.controlErr != nil {
		b.rep.skip(part, "control plane did not start: "+firstLine(b.stack.controlErr.Error()))
		return false
	}
	return true
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func selectParts(only string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		ok := false
		for _, q := range parts {
			ok = ok || p == q
		}
		if !ok {
			return nil, fmt.Errorf("-only: no part %q; the parts are %s", p, strings.Join(parts, ","))
		}
		out[p] = true
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		var v int
		if _, err := fmt.Sscan(f, &v); err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func machineMemory() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	var kb int64
	fmt.Sscanf(strings.TrimPrefix(firstLine(string(b)), "MemTotal:"), "%d", &kb)
	return fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
}

// loadAverage is the 1-minute load average: on a shared machine it says
// how much the figures were disturbed.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
