package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// benchCompressed downloads the decompress part's image, compressed each
// way, over loopback: a node agent (download, verify the compressed bytes,
// decompress, hash, fsync, publish) against curl then the tool
// (`curl -o x && TOOL -dc x > y && sha256sum y`) and against the streaming
// pipe (`curl | TOOL -dc | tee y | sha256sum`), in the same rounds.
func (b *bench) benchCompressed(ctx context.Context, size int64) {
	const part = "compressed"
	out, img, sum, ok := b.prepareImage(part, size)
	if !ok {
		return
	}
	b.rep.add(part, "image", fmt.Sprintf("%s, zeros and pseudo-random 1 MiB blocks; %d rounds; ratios to the streaming pipe", mib(size), b.rounds))
	x, y := filepath.Join(out, "compressed"), filepath.Join(out, "image")
	q := func(s string) string { return "'" + s + "'" }
	for _, c := range compressors {
		if ctx.Err() != nil {
			return
		}
		file, ok := b.compressedFile(ctx, part, c.kind, c.ext, c.compress, img)
		if !ok {
			continue
		}
		packed, err := fileSHA256(file)
		if err != nil {
			b.rep.skip(part, err.Error())
			continue
		}
		url := b.mirror.fileURL(filepath.Base(file), "", 0)
		shell := func(script string) func(context.Context, int) (outcome, error) {
			return func(ctx context.Context, _ int) (outcome, error) {
				defer os.Remove(x)
				defer os.Remove(y)
				o, stdout, err := timed(ctx, "sh", "-c", script)
				if err == nil && !strings.HasPrefix(stdout, sum) {
					err = fmt.Errorf("sha256sum says %.64s, want %s", stdout, sum)
				}
				return o, err
			}
		}
		pipe := &contestant{name: "curl | " + c.kind + " -dc | tee | sha256sum", run: shell(fmt.Sprintf(
			"curl -sS --fail %s | %s -dc | tee %s | sha256sum", q(url), c.kind, q(y)))}
		steps := &contestant{name: "curl -o, " + c.kind + " -dc, sha256sum", run: shell(fmt.Sprintf(
			"curl -sS --fail -o %s %s && %s -dc < %s > %s && sha256sum %s", q(x), q(url), c.kind, q(x), q(y), q(y)))}
		agent := &contestant{name: "node agent, " + c.kind, run: b.compressedDownload(c.kind, url, packed, sum)}
		cs := []*contestant{pipe, steps, agent}
		runRounds(ctx, cs, b.rounds)
		for _, k := range cs {
			if k.err != nil {
				b.rep.goal(part, k.name, "failed", "", false)
				b.rep.note("%v", k.err)
				continue
			}
			r := pairedRatio(pipe, k)
			value := fmt.Sprintf("%s (%s)", rate(size, median(k.times)), ratio(r))
			switch {
			case k != agent:
				b.rep.add(part, k.name, value)
			case c.kind == "xz":
				b.rep.goal(part, k.name, value, "≥ 0.90× the pipe", r >= 0.9)
			default:
				b.rep.goal(part, k.name, value, "≥ 1.00× the pipe", r >= 1.0)
			}
			b.rep.note("times %s", durations(k.times))
		}
	}
}

// compressedDownload has node-1's agent download url (sha256 packed) into
// its local pool and checks the published file's own sha256 is want.
func (b *bench) compressedDownload(kind, url, packed, want string) func(context.Context, int) (outcome, error) {
	a := b.stack.agents[0]
	return func(ctx context.Context, r int) (outcome, error) {
		c := a.client()
		name := fmt.Sprintf("bench-%s-%d.img", kind, r)
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-compressed-%s-%d-%d", kind, os.Getpid(), r), URL: url,
			PoolID: a.local, FileName: name, Checksum: "sha256:" + packed, Format: "raw"}
		o, d, err := timedJob(ctx, c, req)
		defer c.DeleteFile(context.Background(), a.local, name)
		if err == nil && d.FileChecksum != "sha256:"+want {
			err = fmt.Errorf("the agent published %s, want sha256:%s", d.FileChecksum, want)
		}
		return o, err
	}
}

// timedJob runs one agent job and checks it published the image.
func timedJob(ctx context.Context, c *agentclient.Client, req agentclient.DownloadRequest) (outcome, agentclient.Download, error) {
	start := time.Now()
	d, err := runAgentJob(ctx, c, req, 10*time.Millisecond)
	o := outcome{took: time.Since(start)}
	if err == nil && d.State != agentclient.StateCompleted {
		err = fmt.Errorf("agent job %s ended %s: %v", req.ID, d.State, d.Error)
	}
	return o, d, err
}

// fileSHA256 is the hex sha256 of a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
