package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// TestCLIDistributions drives `cloudimages distributions` against a stack
// of four agents, a local pool each; node-4 keeps all its pool free
// (--min-free 100%), so a copy into p4 fails disk_full; node-3 writes
// slowly (2 MB/s), so that it can be killed mid-copy. Each subtest leaves
// the stack for the next.
func TestCLIDistributions(t *testing.T) {
	const token = "cli-dist-token-0123456789"
	var pools []testenv.StackPool
	for _, p := range []struct{ pool, node string }{{"p1", "node-1"}, {"p2", "node-2"}, {"p3", "node-3"}, {"p4", "node-4"}} {
		pools = append(pools, testenv.StackPool{ID: p.pool, NodeIDs: []string{p.node}})
	}
	s := testenv.StartStack(t, testenv.StackOptions{APIToken: token, Agents: 4, Pools: pools,
		NodeAgentArgs: map[string][]string{"node-4": {"--min-free", "100%"}, "node-3": {"--max-bandwidth", "2MB/s"}}, WorkerArgs: []string{"--no-node-timeout", "20s"}})
	up := testenv.NewUpstream(t)
	env := cliEnv(s, token)

	var ready api.Distribution
	t.Run("create --wait into three pools shows each copy and its source, ends READY with exit 0", func(t *testing.T) {
		f := addImage(up, "cli-dist.qcow2", 2<<20)
		r := cli(t, env, "dist", "create", f.url, "--checksum", f.sum, "--name", "cli-dist", "--pool", "p1,p2", "--pool", "p3",
			"--max-parallel", "2", "--wait")
		if r.code != 0 {
			t.Fatalf("create --wait: %s", r)
		}
		m := regexp.MustCompile(`distribution (\S+) READY: cli-dist into 3/3 pools, 1 from the mirror \(2\.0 MiB read\), 2 from peers`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("stdout does not say READY with where the copies came from:\n%s", r)
		}
		// Off a terminal: a line for each copy as its status or source
		// changes, the last ones READY with their source.
		if !regexp.MustCompile(`(?m)^p\d\s+READY\s.*from mirror$`).MatchString(r.stderr) ||
			!regexp.MustCompile(`(?m)^p\d\s+READY\s.*from node:node-\d$`).MatchString(r.stderr) {
			t.Errorf("stderr lacks READY lines for copies from the mirror and from a node:\n%s", r.stderr)
		}
		ready = getDistribution(t, s, m[1])
		if ready.Status != "READY" || len(ready.Copies) != 3 {
			t.Fatalf("the API says %s, copies %+v", ready.Status, ready.Copies)
		}
		checkCopies(t, s, ready, f)
	})
	if ready.ID == "" {
		t.FailNow()
	}

	var partial string
	t.Run("a distribution with a full pool ends PARTIAL: exit 1, the pool's code and message", func(t *testing.T) {
		f := addImage(up, "cli-dist-full.qcow2", 1<<20)
		r := cli(t, env, "distributions", "create", f.url, "--checksum", f.sum, "--pool", "p1", "--pool", "p4", "--wait", "-o", "json")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", r.code, r)
		}
		if !regexp.MustCompile(`distribution \S+ PARTIAL: 1/2 pools READY`).MatchString(r.stderr) ||
			!regexp.MustCompile(`(?m)^  pool p4: FAILED: disk_full: \S`).MatchString(r.stderr) {
			t.Errorf("stderr does not say PARTIAL with p4's code and message:\n%s", r.stderr)
		}
		var d api.Distribution
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Status != "PARTIAL" || len(d.FailedPools) != 1 || d.FailedPools[0] != "p4" {
			t.Fatalf("-o json prints the final distribution: %v, %+v\n%s", err, d, r.stdout)
		}
		partial = d.ID
		if r := cli(t, env, "dist", "wait", partial); r.code != 1 || !strings.Contains(r.stderr, "pool p4: FAILED: disk_full: ") {
			t.Errorf("wait on the PARTIAL distribution: %s", r)
		}
	})

	t.Run("ls -o json lists both; ls and get show them for people", func(t *testing.T) {
		r := cli(t, env, "dist", "ls", "-o", "json")
		var all struct{ Items []api.Distribution }
		if err := json.Unmarshal([]byte(r.stdout), &all); r.code != 0 || err != nil {
			t.Fatalf("ls -o json: %v\n%s", err, r)
		}
		got := map[string]string{}
		for _, d := range all.Items {
			got[d.ID] = d.Status
		}
		if len(got) != 2 || got[ready.ID] != "READY" || got[partial] != "PARTIAL" {
			t.Errorf("ls -o json lists %v, want %s READY and %s PARTIAL", got, ready.ID, partial)
		}
		r = cli(t, env, "dist", "ls")
		if r.code != 0 || !regexp.MustCompile(`(?m)^`+ready.ID+`\s+cli-dist\s+READY\s+3/3\s+-\s+2\.0 MiB`).MatchString(r.stdout) ||
			!regexp.MustCompile(`(?m)^`+partial+`\s.*PARTIAL\s+1/2\s+p4\s`).MatchString(r.stdout) {
			t.Errorf("ls: want a row for each, with READY counts and failed pools:\n%s", r)
		}
		r = cli(t, env, "dist", "get", partial)
		if r.code != 0 || !regexp.MustCompile(`(?m)^p4\s+\S+\s+FAILED\s+.*disk_full: `).MatchString(r.stdout) ||
			!regexp.MustCompile(`(?m)^Failed pools:\s+p4$`).MatchString(r.stdout) {
			t.Errorf("get: want the failed pool and its copy's error:\n%s", r)
		}
		if r := cli(t, env, "dist", "get", "no-such-distribution"); r.code != 1 || !strings.HasPrefix(r.stderr, "not_found: ") {
			t.Errorf("get of an unknown distribution: want exit 1 and not_found:\n%s", r)
		}
	})

	t.Run("completion offers pools and distributions", func(t *testing.T) {
		r := cli(t, env, "__complete", "dist", "create", "cirros-0.6.3", "--pool", "")
		for _, p := range []string{"p1", "p2", "p3", "p4"} {
			if r.code != 0 || !regexp.MustCompile(`(?m)^`+p+`\t`).MatchString(r.stdout) {
				t.Errorf("completing --pool lacks %s:\n%s", p, r)
			}
		}
		r = cli(t, env, "__complete", "dist", "wait", "")
		if r.code != 0 || !strings.Contains(r.stdout, ready.ID+"\t") || !strings.Contains(r.stdout, partial+"\t") {
			t.Errorf("completing a distribution id lacks %s or %s:\n%s", ready.ID, partial, r)
		}
	})

	t.Run("rm of an ended distribution forgets it and keeps its images", func(t *testing.T) {
		r := cli(t, env, "dist", "rm", ready.ID)
		if r.code != 0 || !strings.Contains(r.stdout, ready.ID+": forgotten; its images stay") {
			t.Fatalf("rm: %s", r)
		}
		if r := cli(t, env, "dist", "get", ready.ID); r.code != 1 || !strings.HasPrefix(r.stderr, "not_found: ") {
			t.Errorf("get after rm: want not_found:\n%s", r)
		}
		for _, c := range ready.Copies {
			if img := getImage(t, s, c.ImageID); img.Status != "READY" {
				t.Errorf("pool %s: image %s is %s after the distribution was forgotten, want READY", c.PoolID, img.ID, img.Status)
			}
		}
	})

	t.Run("rm of a running distribution cancels its copies; wait then exits 1 CANCELLED", func(t *testing.T) {
		f := addImage(up, "cli-dist-slow.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate / 4})
		r := cli(t, env, "dist", "create", f.url, "--checksum", f.sum, "--pool", "p1", "--pool", "p2")
		m := regexp.MustCompile(`^(\S+)  RUNNING  started; follow it with: cloudimages distributions wait (\S+)\n$`).FindStringSubmatch(r.stdout)
		if r.code != 0 || m == nil || m[1] != m[2] {
			t.Fatalf("create without --wait: want the id, RUNNING and how to follow it:\n%s", r)
		}
		id := m[1]
		eventually(t, time.Minute, "a copy moving", func() bool {
			for _, c := range getDistribution(t, s, id).Copies {
				if c.Progress != nil && c.Progress.BytesDone > 0 {
					return true
				}
			}
			return false
		})
		if r := cli(t, env, "dist", "rm", id); r.code != 0 || !strings.Contains(r.stdout, id+": cancelling the copies in flight") {
			t.Fatalf("rm of a running distribution: %s", r)
		}
		r = cli(t, env, "dist", "wait", id)
		if r.code != 1 || !strings.Contains(r.stderr, "distribution "+id+" CANCELLED") {
			t.Errorf("wait on the cancelled distribution: want exit 1 and CANCELLED:\n%s", r)
		}
	})

	t.Run("an agent killed mid-copy: wait says its node is OFFLINE, then exits 1 naming the pool", func(t *testing.T) {
		f := addImage(up, "cli-dist-kill.qcow2", 16<<20)
		cmd := exec.Command(testenv.Binary(t), "dist", "create", f.url, "--checksum", f.sum, "--pool", "p1", "--pool", "p3", "--wait")
		cmd.Env = env
		var stdout, stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		moving := regexp.MustCompile(`(?m)^p3\s+DOWNLOADING\s+\d+\.\d%\s+[1-9][\d.]* [KM]iB of 16 MiB.*from node:node-1$`)
		eventually(t, 2*time.Minute, "p3's copy moving from node-1", func() bool { return moving.MatchString(stderr.String()) })
		s.Agent("node-3").Kill()
		eventually(t, 2*time.Minute, "the CLI saying node-3 is offline", func() bool {
			return regexp.MustCompile(`(?m)^p3\s+DOWNLOADING\s.*node node-3 OFFLINE \(last seen \d+s ago`).MatchString(stderr.String())
		})
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(3 * time.Minute):
			t.Fatalf("the CLI still waits 3 minutes after node-3 died:\n%s", stderr.String())
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("the CLI ended with %v, want exit 1", err)
		}
		if !regexp.MustCompile(`distribution \S+ PARTIAL: 1/2 pools READY`).MatchString(stderr.String()) ||
			!regexp.MustCompile(`(?m)^  pool p3: FAILED: [a-z_]+: \S`).MatchString(stderr.String()) {
			t.Errorf("the CLI does not say PARTIAL with p3's code and message:\n%s", stderr.String())
		}
	})
}
