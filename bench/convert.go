package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// benchConvert converts the decompress part's image, as a qcow2, to raw:
// `qemu-img convert` run by hand on the file, the same followed by what
// the agent also does to the result (sha256sum, fdatasync), and a node
// agent downloading the qcow2 into a pool that wants raw, timed from the
// moment it says "converting" to the published file (qemu-img, its check
// of the result, the hash, the fsync and the rename). All in the same
// rounds, on the same file system; rates are of the virtual size.
func (b *bench) benchConvert(ctx context.Context, size int64) {
	const part = "convert"
	out, img, sum, ok := b.prepareImage(part, size)
	if !ok {
		return
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		b.rep.skip(part, "qemu-img is not installed (make test-deps)")
		return
	}
	src := img + ".qcow2"
	if err := qcow2Once(ctx, img, src); err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	packed, err := fileSHA256(src)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	fi, _ := os.Stat(src)
	b.rep.add(part, "image", fmt.Sprintf("%s disk (zeros and pseudo-random 1 MiB blocks) as a %s qcow2, to raw; %d rounds; rates of the virtual size, ratios to qemu-img convert by hand",
		mib(size), mib(fi.Size()), b.rounds))
	dst := filepath.Join(out, "converted.raw")
	q := func(s string) string { return "'" + s + "'" }
	shell := func(script string, wantSum bool) func(context.Context, int) (outcome, error) {
		return func(ctx context.Context, _ int) (outcome, error) {
			defer os.Remove(dst)
			o, stdout, err := timed(ctx, "sh", "-c", script)
			if err == nil && wantSum && !strings.HasPrefix(stdout, sum) {
				err = fmt.Errorf("sha256sum says %.64s, want %s", stdout, sum)
			}
			return o, err
		}
	}
	convert := fmt.Sprintf("qemu-img convert -f qcow2 -O raw %s %s", q(src), q(dst))
	hand := &contestant{name: "qemu-img convert by hand", run: shell(convert, false)}
	same := &contestant{name: "qemu-img convert && sha256sum && sync --data", run: shell(
		fmt.Sprintf("%s && sha256sum %s && sync --data %s", convert, q(dst), q(dst)), true)}
	var whole []time.Duration
	agent := &contestant{name: "node agent, converting to published", run: b.convertDownload(b.mirror.fileURL(filepath.Base(src), "", 0), packed, sum, &whole)}
	cs := []*contestant{hand, same, agent}
	runRounds(ctx, cs, b.rounds)
	for _, k := range cs {
		if k.err != nil {
			b.rep.goal(part, k.name, "failed", "", false)
			b.rep.note("%v", k.err)
			continue
		}
		r := pairedRatio(hand, k)
		value := fmt.Sprintf("%s (%s)", rate(size, median(k.times)), ratio(r))
		if k != agent {
			b.rep.add(part, k.name, value)
			b.rep.note("times %s", durations(k.times))
			continue
		}
		r = pairedRatio(same, agent)
		b.rep.goal(part, k.name, value, "≥ 0.90× qemu-img convert && sha256sum && sync", r >= 0.9)
		b.rep.note("%s the same work by hand; times %s; the whole download (loopback, verify, inspect, convert, publish) %s",
			ratio(r), durations(k.times), durations(whole))
	}
}

// convertDownload has node-1's agent download the qcow2 at url (sha256
// packed) into its local pool as raw, and checks the published file's
// sha256 is want. Its outcome is the time from "converting" to published;
// whole collects each download's time from start to end.
func (b *bench) convertDownload(url, packed, want string, whole *[]time.Duration) func(context.Context, int) (outcome, error) {
	a := b.stack.agents[0]
	return func(ctx context.Context, r int) (outcome, error) {
		c := a.client()
		name := fmt.Sprintf("bench-convert-%d.raw", r)
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-convert-%d-%d", os.Getpid(), r), URL: url,
			PoolID: a.local, FileName: name, Checksum: "sha256:" + packed, Format: "qcow2", ConvertTo: "raw"}
		defer c.DeleteFile(context.Background(), a.local, name)
		start := time.Now()
		d, err := c.StartDownload(ctx, req)
		var converting time.Time
		for err == nil && !d.Finished() {
			select {
			case <-ctx.Done():
				return outcome{}, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			if d, err = c.Download(ctx, req.ID); err == nil && converting.IsZero() && d.State == agentclient.StateConverting {
				converting = time.Now()
			}
		}
		end := time.Now()
		switch {
		case err != nil:
			return outcome{}, err
		case d.State != agentclient.StateCompleted:
			return outcome{}, fmt.Errorf("agent job %s ended %s: %v", req.ID, d.State, d.Error)
		case converting.IsZero():
			return outcome{}, fmt.Errorf("agent job %s was never seen converting", req.ID)
		case d.FileChecksum != "sha256:"+want:
			return outcome{}, fmt.Errorf("the agent published %s, want sha256:%s", d.FileChecksum, want)
		}
		*whole = append(*whole, end.Sub(start))
		return outcome{took: end.Sub(converting)}, nil
	}
}

// qcow2Once converts the raw image img to the qcow2 dst with qemu-img,
// unless an earlier run made it (and left dst.done).
func qcow2Once(ctx context.Context, img, dst string) error {
	if _, err := os.Stat(dst + ".done"); err == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "bench: qemu-img convert -O qcow2 %s\n", filepath.Base(img))
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", img, dst+".tmp").CombinedOutput(); err != nil {
		os.Remove(dst + ".tmp")
		return fmt.Errorf("qemu-img convert -O qcow2: %v: %s", err, out)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return err
	}
	return os.WriteFile(dst+".done", nil, 0o644)
}
