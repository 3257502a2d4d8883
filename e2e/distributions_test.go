package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// distribute posts a URL distribution of f into pools and returns it.
func distribute(t *testing.T, s *testenv.Stack, f mirrorFile, maxParallel int, pools ...string) api.Distribution {
	t.Helper()
	body := map[string]any{"url": f.url, "name": strings.TrimSuffix(f.name, ".qcow2"), "checksum": f.sum, "pool_ids": pools,
		"max_parallel": maxParallel}
	var d api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", body, &d, http.StatusAccepted)
	return d
}

func getDistribution(t *testing.T, s *testenv.Stack, id string) api.Distribution {
	t.Helper()
	var d api.Distribution
	s.API.MustDo(t, http.MethodGet, "/v1/distributions/"+id, nil, &d, http.StatusOK)
	return d
}

// waitDistribution polls the distribution until it has ended.
func waitDistribution(t *testing.T, s *testenv.Stack, id string, timeout time.Duration) api.Distribution {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := getDistribution(t, s, id)
		if d.Status != "RUNNING" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution %s still RUNNING after %s: %+v", id, timeout, d.Copies)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkCopies checks that every copy is READY, its file is on its node's
// disk with the mirror file's bytes, its image says where they came from,
// and exactly one came from the mirror.
func checkCopies(t *testing.T, s *testenv.Stack, d api.Distribution, f mirrorFile) {
	t.Helper()
	fromMirror := 0
	for _, c := range d.Copies {
		if c.Status != "READY" {
			t.Errorf("pool %s: copy %s (%+v), want READY", c.PoolID, c.Status, c.Error)
			continue
		}
		img := getImage(t, s, c.ImageID)
		path := filepath.Join(s.PoolDir(c.PoolID, img.NodeID), agentclient.ImagesDir, img.FileName)
		if got := fileSHA256(t, path); got != f.sum || img.FileChecksum != f.sum || img.Checksum != f.sum {
			t.Errorf("pool %s: the file on %s hashes %s, its image says file %s checksum %s; want %s", c.PoolID, img.NodeID, got, img.FileChecksum, img.Checksum, f.sum)
		}
		switch {
		case c.Source == "mirror" && c.BytesFromMirror == int64(len(f.data)) && img.Source == "mirror":
			fromMirror++
		case strings.HasPrefix(c.Source, "node:") && c.Source != "node:"+img.NodeID && c.BytesFromPeers == int64(len(f.data)) && img.Source == "peer":
		default:
			t.Errorf("pool %s: copy source %q (%d from the mirror, %d from peers), image source %q", c.PoolID, c.Source, c.BytesFromMirror, c.BytesFromPeers, img.Source)
		}
	}
	if fromMirror != 1 {
		t.Errorf("%d copies from the mirror, want exactly one", fromMirror)
	}
}

// TestDistributionCopiesFromTheMirrorOnceAndSurvivesASourceKilledMidCopy:
// 6 agents, a local pool each. One distribution into the six pools: the
// mirror serves the file exactly once, every copy is READY and verified.
// Then another, over slow targets: the agent a copy reads from is killed
// (SIGKILL) mid-copy, and the copy ends READY from another READY copy,
// still with one read of the mirror.
func TestDistributionCopiesFromTheMirrorOnceAndSurvivesASourceKilledMidCopy(t *testing.T) {
	up := testenv.NewUpstream(t)
	var pools []testenv.StackPool
	var poolIDs []string
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("p%d", i)
		pools = append(pools, testenv.StackPool{ID: id, NodeIDs: []string{fmt.Sprintf("node-%d", i)}})
		poolIDs = append(poolIDs, id)
	}
	slow := []string{"--max-bandwidth", "4MB/s"}
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 6, Pools: pools,
		NodeAgentArgs: map[string][]string{"node-3": slow, "node-4": slow}})

	small := addImage(up, "dist-small.qcow2", 2<<20)
	d := distribute(t, s, small, 2, poolIDs...)
	d = waitDistribution(t, s, d.ID, 5*time.Minute)
	if d.Status != "READY" || len(d.Copies) != 6 || len(d.FailedPools) != 0 {
		t.Fatalf("distribution ended %s with copies %+v, want READY in 6 pools", d.Status, d.Copies)
	}
	checkCopies(t, s, d, small)
	if served := up.BytesServed(small.name); served != int64(len(small.data)) || d.MirrorBytes != served {
		t.Fatalf("the mirror served %d bytes (the distribution counts %d), want the file's %d exactly once", served, d.MirrorBytes, len(small.data))
	}
	out, err := s.TemporalCLI("workflow", "list", "--query", fmt.Sprintf(`DistributionId="%s"`, d.ID))
	if err != nil {
		t.Fatalf("temporal workflow list: %v\n%s", err, out)
	}
	if n := strings.Count(out, "DownloadImageWorkflow"); n != 6 || !strings.Contains(out, "DistributeImageWorkflow") {
		t.Fatalf("workflows with DistributionId %s: want the distribution and its 6 copies:\n%s", d.ID, out)
	}
	// Posted again: the same distribution, nothing copied again.
	var again api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"url": small.url, "name": "dist-small", "checksum": small.sum,
		"pool_ids": []string{"p6", "p5", "p4", "p3", "p2", "p1"}}, &again, http.StatusOK)
	if again.ID != d.ID || again.Status != "READY" {
		t.Fatalf("posted again: %s %s, want %s READY", again.ID, again.Status, d.ID)
	}

	// max_parallel 1 over p1..p4: p1 from the mirror, p2 from p1, then p3
	// from p1 and p4 from p2. node-3 copies slowly: kill p1's agent then.
	big := addImage(up, "dist-big.qcow2", 24<<20)
	d2 := distribute(t, s, big, 1, "p1", "p2", "p3", "p4")
	var p3 api.DistributionCopy
	deadline := time.Now().Add(5 * time.Minute)
	for {
		cur := getDistribution(t, s, d2.ID)
		for _, c := range cur.Copies {
			if c.PoolID == "p3" {
				p3 = c
			}
		}
		if p3.Source == "node:node-1" && p3.Progress != nil && p3.Progress.BytesDone > 0 && p3.Progress.BytesDone < int64(len(big.data))/2 {
			break
		}
		if cur.Status != "RUNNING" || time.Now().After(deadline) {
			t.Fatalf("p3's copy never seen reading node-1 mid-copy: distribution %s, p3 %+v", cur.Status, p3)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Agent("node-1").Kill()
	d2 = waitDistribution(t, s, d2.ID, 5*time.Minute)
	if d2.Status != "READY" {
		t.Fatalf("after the source was killed the distribution ended %s: %+v", d2.Status, d2.Copies)
	}
	for _, c := range d2.Copies {
		if c.PoolID == "p3" && c.Source != "node:node-2" {
			t.Errorf("p3's copy came from %q, want node-2's copy once node-1 died", c.Source)
		}
	}
	// node-1's file is out of reach now: check the others on disk.
	var alive api.Distribution = d2
	alive.Copies = nil
	for _, c := range d2.Copies {
		if c.PoolID != "p1" {
			alive.Copies = append(alive.Copies, c)
		} else if c.Status != "READY" || c.Source != "mirror" {
			t.Errorf("p1's copy %+v, want READY from the mirror", c)
		}
	}
	checkPeerCopies(t, s, alive, big)
	if served := up.BytesServed(big.name); served != int64(len(big.data)) {
		t.Fatalf("the mirror served %d bytes of the big file, want exactly its %d", served, len(big.data))
	}
}

// checkPeerCopies is checkCopies for copies that all came from peers.
func checkPeerCopies(t *testing.T, s *testenv.Stack, d api.Distribution, f mirrorFile) {
	t.Helper()
	for _, c := range d.Copies {
		img := getImage(t, s, c.ImageID)
		path := filepath.Join(s.PoolDir(c.PoolID, img.NodeID), agentclient.ImagesDir, img.FileName)
		if c.Status != "READY" || !strings.HasPrefix(c.Source, "node:") || img.Source != "peer" {
			t.Errorf("pool %s: copy %s from %q, image source %q; want READY from a peer", c.PoolID, c.Status, c.Source, img.Source)
			continue
		}
		if got := fileSHA256(t, path); got != f.sum || img.FileChecksum != f.sum {
			t.Errorf("pool %s: the file hashes %s (image says %s), want %s", c.PoolID, got, img.FileChecksum, f.sum)
		}
	}
}

// TestDistributionIntoAFullPoolEndsPartial: node-3 keeps all its pool free
// (--min-free 100%): its copy ends disk_full, the others READY, and the
// distribution PARTIAL naming p3. Posted again, the distribution retries
// p3 only (still full): PARTIAL again, the mirror still read once.
func TestDistributionIntoAFullPoolEndsPartial(t *testing.T) {
	up := testenv.NewUpstream(t)
	pools := []testenv.StackPool{{ID: "p1", NodeIDs: []string{"node-1"}}, {ID: "p2", NodeIDs: []string{"node-2"}},
		{ID: "p3", NodeIDs: []string{"node-3"}}}
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 3, Pools: pools,
		NodeAgentArgs: map[string][]string{"node-3": {"--min-free", "100%"}}, WorkerArgs: []string{"--no-node-timeout", "20s"}})
	f := addImage(up, "dist-full.qcow2", 1<<20)
	d := distribute(t, s, f, 4, "p1", "p2", "p3")
	d = waitDistribution(t, s, d.ID, 5*time.Minute)
	if d.Status != "PARTIAL" || len(d.FailedPools) != 1 || d.FailedPools[0] != "p3" || !strings.Contains(d.Message, "p3") {
		t.Fatalf("distribution ended %s, failed pools %v, message %q; want PARTIAL naming p3", d.Status, d.FailedPools, d.Message)
	}
	for _, c := range d.Copies {
		switch {
		case c.PoolID == "p3":
			if c.Status != "FAILED" || c.Error == nil || c.Error.Code != "disk_full" {
				t.Errorf("p3's copy %+v, want FAILED disk_full", c)
			}
			img := getImage(t, s, c.ImageID)
			wantError(t, img, "disk_full")
		case c.Status != "READY":
			t.Errorf("pool %s: copy %s, want READY", c.PoolID, c.Status)
		}
	}
	var again api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"url": f.url, "name": "dist-full", "checksum": f.sum,
		"pool_ids": []string{"p3", "p2", "p1"}}, &again, http.StatusOK)
	if again.ID != d.ID || again.Status != "RUNNING" {
		t.Fatalf("posted again: %s %s, want %s RUNNING (a retry)", again.ID, again.Status, d.ID)
	}
	again = waitDistribution(t, s, d.ID, 5*time.Minute)
	if again.Status != "PARTIAL" || len(again.FailedPools) != 1 {
		t.Fatalf("the retry ended %s (%v), want PARTIAL with p3 still full", again.Status, again.FailedPools)
	}
	if served := up.BytesServed(f.name); served != int64(len(f.data)) {
		t.Fatalf("the mirror served %d bytes, want the file once (%d): the retry copies from peers", served, len(f.data))
	}
}
