package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantix/cloudimages/decompress"
)

// compressors are the kinds the decompress part measures, with the
// command that makes each source file. The levels are fast ones so the
// sources are quick to make; the level hardly changes decompression speed.
var compressors = []struct {
	kind, ext string
	compress  string // shell: reads stdin, writes stdout
}{
	{"xz", ".xz", "xz -T0 -1 -c"},
	{"zstd", ".zst", "zstd -T0 -q -c"},
	{"gzip", ".gz", "gzip -1 -c"},
}

// benchDecompress decompresses a 1 GiB image (half zero blocks, half
// pseudo-random ones) compressed each way, from a file to a file with its
// sha256, with the decompress package (as the agent does) and with the
// shell pipe `TOOL -dc < f | tee out | sha256sum`, interleaved over rounds;
// it reports each kind's median rate and its paired ratio to the pipe.
func (b *bench) benchDecompress(ctx context.Context, size int64) {
	const part = "decompress"
	out, img, sum, ok := b.prepareImage(part, size)
	if !ok {
		return
	}
	b.rep.add(part, "image", fmt.Sprintf("%s: 1 MiB blocks, zeros and pseudo-random in turn; %d rounds; output to a file and sha256, no fsync", mib(size), b.rounds))
	dst := filepath.Join(out, "decompressed.img")
	for _, c := range compressors {
		if ctx.Err() != nil {
			return
		}
		file, ok := b.compressedFile(ctx, part, c.kind, c.ext, c.compress, img)
		if !ok {
			continue
		}
		fi, _ := os.Stat(file)
		pipe := &contestant{name: "pipe " + c.kind + " -dc → tee → sha256sum", run: func(ctx context.Context, _ int) (outcome, error) {
			defer os.Remove(dst)
			o, stdout, err := timed(ctx, "sh", "-c", fmt.Sprintf("%s -dc < '%s' | tee '%s' | sha256sum", c.kind, file, dst))
			if err == nil && !strings.HasPrefix(stdout, sum) {
				err = fmt.Errorf("sha256sum says %.64s, want %s", stdout, sum)
			}
			return o, err
		}}
		tools := map[*contestant]*string{}
		ours := func(name string, opts ...decompress.Option) *contestant {
			tool := new(string)
			k := &contestant{name: name, run: decompressFile(c.kind, file, dst, sum, tool, opts...)}
			tools[k] = tool
			return k
		}
		cs := []*contestant{pipe, ours("decompress " + c.kind)}
		if c.kind == "xz" {
			// Ten times slower: one round is enough to show it.
			slow := ours("decompress xz, pure Go, 1 round", decompress.PureGo())
			run := slow.run
			slow.run = func(ctx context.Context, r int) (outcome, error) {
				if r > 0 {
					return outcome{}, errSkipRound
				}
				return run(ctx, r)
			}
			cs = append(cs, slow)
		}
		runRounds(ctx, cs, b.rounds)
		for _, k := range cs {
			if k.err != nil {
				b.rep.goal(part, k.name, "failed", "", false)
				b.rep.note("%v", k.err)
				continue
			}
			x := pairedRatio(pipe, k)
			value := fmt.Sprintf("%s (%s)", rate(size, median(k.times)), ratio(x))
			switch {
			case k == pipe:
				b.rep.add(part, k.name, value)
				b.rep.note("from %s (%s); times %s", filepath.Base(file), mib(fi.Size()), durations(k.times))
				continue
			case k.name == "decompress xz":
				b.rep.goal(part, k.name, value, "≥ 0.90× the pipe", x >= 0.9)
			case c.kind != "xz":
				b.rep.goal(part, k.name, value, "≥ 1.00× the pipe", x >= 1.0)
			default:
				b.rep.add(part, k.name, value)
			}
			b.rep.note("%s; times %s", *tools[k], durations(k.times))
		}
	}
}

// prepareImage makes the output folder and the compressed parts' image
// (or finds an earlier run's), reporting a skip of part when it cannot.
func (b *bench) prepareImage(part string, size int64) (out, img, sum string, ok bool) {
	out = filepath.Join(b.dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.rep.skip(part, err.Error())
		return "", "", "", false
	}
	img, sum, err := makeImage(filepath.Join(b.dir, "src"), size)
	if err != nil {
		b.rep.skip(part, err.Error())
		return "", "", "", false
	}
	return out, img, sum, true
}

// compressedFile is img compressed with the tool kind (made once and kept
// beside it), or a reported skip of part when the tool is missing or fails.
func (b *bench) compressedFile(ctx context.Context, part, kind, ext, compress, img string) (string, bool) {
	if _, err := exec.LookPath(kind); err != nil {
		b.rep.skip(part, kind+" is not installed (make test-deps)")
		return "", false
	}
	file := img + ext
	if err := compressOnce(ctx, compress, img, file); err != nil {
		b.rep.skip(part, err.Error())
		return "", false
	}
	return file, true
}

// errSkipRound is a contestant's way of sitting a round out.
var errSkipRound = errors.New("skip this round")

// runRounds runs every contestant once a round, each round starting with
// another one, and records times (or the first error).
func runRounds(ctx context.Context, cs []*contestant, rounds int) {
	for r := 0; r < rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			if c.err != nil || ctx.Err() != nil {
				continue
			}
			settle()
			o, err := c.run(ctx, r)
			if err == errSkipRound {
				continue
			}
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
}

// decompressFile is the agent's way: the compressed bytes read as a stream
// (not handed to xz as a file), the output written to a file and hashed.
func decompressFile(kind, file, dst, want string, tool *string, opts ...decompress.Option) func(context.Context, int) (outcome, error) {
	return func(ctx context.Context, _ int) (outcome, error) {
		defer os.Remove(dst)
		start := time.Now()
		in, err := os.Open(file)
		if err != nil {
			return outcome{}, err
		}
		defer in.Close()
		r, err := decompress.NewReader(ctx, kind, struct{ io.Reader }{in}, opts...)
		if err != nil {
			return outcome{}, err
		}
		defer r.Close()
		f, err := os.Create(dst)
		if err != nil {
			return outcome{}, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(io.MultiWriter(f, h), r, make([]byte, 1<<20)); err != nil {
			return outcome{}, err
		}
		if err := f.Close(); err != nil {
			return outcome{}, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return outcome{}, fmt.Errorf("%s: sha256 %s, want %s", r.Tool(), got, want)
		}
		*tool = r.Tool()
		return outcome{took: time.Since(start)}, nil
	}
}

// makeImage writes the decompress part's image into dir (or reuses the one
// an earlier run left, with its .sha256 beside it) and returns its path
// and sha256: 1 MiB blocks, zeros and pseudo-random in turn, which
// compress about 2:1 like a real image's mix of empty and used blocks.
func makeImage(dir string, size int64) (string, string, error) {
	path := filepath.Join(dir, fmt.Sprintf("mixed-%d.img", size))
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		if b, err := os.ReadFile(path + ".sha256"); err == nil {
			return path, strings.TrimSpace(string(b)), nil
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	rnd := rand.NewChaCha8([32]byte{'m', 'i', 'x'})
	zeros, block := make([]byte, 1<<20), make([]byte, 1<<20)
	for off, i := int64(0), 0; off < size; off, i = off+1<<20, i+1 {
		n := min(1<<20, size-off)
		b := zeros
		if i%2 == 1 {
			rnd.Read(block)
			b = block
		}
		if _, err := w.Write(b[:n]); err != nil {
			return "", "", fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return path, sum, os.WriteFile(path+".sha256", []byte(sum+"\n"), 0o644)
}

// compressOnce runs the shell command compress from src to dst, unless an
// earlier run made dst (and left dst.done).
func compressOnce(ctx context.Context, compress, src, dst string) error {
	if _, err := os.Stat(dst + ".done"); err == nil {
		return nil
	}
	os.Remove(dst + ".done")
	fmt.Fprintf(os.Stderr, "bench: %s < %s\n", compress, filepath.Base(src))
	cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("%s < '%s' > '%s.tmp'", compress, src, dst))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(dst + ".tmp")
		return fmt.Errorf("%s: %v: %s", compress, err, out)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return err
	}
	return os.WriteFile(dst+".done", nil, 0o644)
}
