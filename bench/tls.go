package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// benchTLS is the transfer over HTTPS: the big file from a local HTTPS
// mirror whose certificate a CA made for the run signed, by a node agent
// given that CA (--ca-file) and by curl given it (--cacert), interleaved
// over rounds. Both speak HTTP/1.1 over TLS 1.3 with AES-GCM; each TLS
// read returns one record (16 KiB at most), which is what the agent's
// buffer filling is for.
func (b *bench) benchTLS(ctx context.Context) {
	const part = "tls"
	src := b.big
	ca, err := testenv.WriteCA(filepath.Join(b.dir, "tls"), "127.0.0.1")
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	m, err := startTLSMirror(b.mirror.dir, ca.Cert)
	if err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	defer m.close()
	a, err := b.stack.startAgent("node-tls", b.stack.bin, 4, "--ca-file", ca.CAFile)
	if err != nil {
		b.rep.skip(part, "agent with --ca-file: "+err.Error())
		return
	}
	defer func() {
		_ = a.p.Stop()
		a.proxy.close()
	}()
	url := m.fileURL(src.Name, "", 0)
	dst := filepath.Join(b.dir, "out", "tls-"+src.Name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		b.rep.skip(part, err.Error())
		return
	}
	curl := &contestant{name: "curl -o (https)", run: func(ctx context.Context, _ int) (outcome, error) {
		defer os.Remove(dst)
		o, _, err := timed(ctx, "curl", "-sS", "--fail", "--http1.1", "--cacert", ca.CAFile, "-o", dst, url)
		return o, err
	}}
	agent := &contestant{name: "node agent (https, sha256, fsync)", run: (b.agentDownload(a, src, url))}
	cs := []*contestant{curl, agent}
	if b.alt != nil {
		// An older agent may have no --ca-file: it trusts the CA through
		// SSL_CERT_FILE, which Go reads for the system's roots.
		alt, err := b.stack.startAgentEnv("node-tls-alt", b.alt.p.Path, 4, nil, []string{"SSL_CERT_FILE=" + ca.CAFile})
		if err != nil {
			b.rep.note("tls: the -compare-bin agent did not start: %v", err)
		} else {
			defer func() {
				_ = alt.p.Stop()
				alt.proxy.close()
			}()
			cs = append(cs, &contestant{name: "node agent, -compare-bin (https)", run: (b.agentDownload(alt, src, url))})
		}
	}
	cpuOf = map[string][]time.Duration{}
	for _, c := range cs {
		c.run = recordCPU(c.name, c.run)
	}
	runRounds(ctx, cs, b.rounds)
	b.rep.add(part, "file", fmt.Sprintf("%s over HTTPS (HTTP/1.1, TLS 1.3), %d rounds; median rate, median of per-round ratios to curl", mib(src.Size), b.rounds))
	for _, c := range cs {
		if c.err != nil {
			b.rep.goal(part, c.name, "failed", "", false)
			b.rep.note("%v", c.err)
			continue
		}
		x := pairedRatio(curl, c)
		value := fmt.Sprintf("%s (%s)", rate(src.Size, median(c.times)), ratio(x))
		if c == agent {
			b.rep.goal(part, c.name, value, "≥ 0.90× curl", x >= 0.9)
		} else {
			b.rep.add(part, c.name, value)
		}
		cpu := ""
		if m := median(cpuOf[c.name]); m > 0 {
			cpu = fmt.Sprintf("CPU %.2fs/GiB, ", m.Seconds()*float64(1<<30)/float64(src.Size))
		}
		b.rep.note("%s: %stimes %s", c.name, cpu, durations(c.times))
	}
}

// startTLSMirror serves dir as the plain mirror does, over HTTPS with
// cert, HTTP/1.1 only (as curl is asked to speak, and the agent speaks).
func startTLSMirror(dir string, cert tls.Certificate) (*mirror, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &mirror{dir: dir, url: "https://" + ln.Addr().String()}
	m.srv = &http.Server{Handler: http.HandlerFunc(m.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	go m.srv.ServeTLS(ln, "", "")
	return m, nil
}

// cpuOf is the agent's CPU time of each round, by contestant: on a busy
// machine CPU per byte tells more than the wall time.
var cpuOf map[string][]time.Duration

// recordCPU notes the CPU time of each run of a contestant in cpuOf.
func recordCPU(name string, run func(context.Context, int) (outcome, error)) func(context.Context, int) (outcome, error) {
	return func(ctx context.Context, r int) (outcome, error) {
		o, err := run(ctx, r)
		if err == nil && o.cpu > 0 {
			cpuOf[name] = append(cpuOf[name], o.cpu)
		}
		return o, err
	}
}
