package e2e

import (
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/tusclient"
)

// airGappedStack is three agents with a local pool each (p1 on node-1, …)
// and no mirror anywhere: images come in by upload.
func airGappedStack(t *testing.T) *testenv.Stack {
	t.Helper()
	pools := []testenv.StackPool{{ID: "p1", NodeIDs: []string{"node-1"}}, {ID: "p2", NodeIDs: []string{"node-2"}},
		{ID: "p3", NodeIDs: []string{"node-3"}}}
	return testenv.StartStack(t, testenv.StackOptions{Agents: 3, Pools: pools,
		APIToken:   "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		WorkerArgs: []string{"--node-grace", "2s", "--heartbeat-timeout", "6s", "--no-node-timeout", "10s"}})
}

// uploadInto uploads data into pool through the API's tus endpoint and
// waits for its image to be READY.
func uploadInto(t *testing.T, s *testenv.Stack, pool, name string, data []byte) api.Image {
	t.Helper()
	c := &tusclient.Client{BaseURL: s.APIURL(), Token: s.API.Token, StateDir: t.TempDir(), RetryDelay: 200 * time.Millisecond, Retries: 30}
	res, err := c.Do(ctx(t), tusclient.Upload{Path: writeFile(t, data), PoolID: pool, Name: name, Checksum: testenv.SHA256(data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return waitStatus(t, s, res.ImageID, "READY", time.Minute)
}

// TestUploadedImageIsDistributedToEveryPoolFromItsNode: one upload into
// p1, then a distribution by image_id to all pools: p1's upload is the
// first copy (adopted), p2 and p3 copies from peers with the upload's
// bytes and file checksum, no mirror byte anywhere; posted again, the same
// distribution, also from the CLI's --image. Refused: image_id with a url
// (400), an unknown image (404), an upload not finished (409, saying to
// wait).
func TestUploadedImageIsDistributedToEveryPoolFromItsNode(t *testing.T) {
	s := airGappedStack(t)
	data := testenv.QCOW2Image(6<<20, 41)
	up := uploadInto(t, s, "p1", "golden.qcow2", data)
	sum := testenv.SHA256(data)
	if up.NodeID != "node-1" || up.FileChecksum != sum {
		t.Fatalf("upload %+v, want READY on node-1 with file checksum %s", up, sum)
	}

	for _, tc := range []struct {
		what   string
		body   map[string]any
		status int
		code   string
	}{
		{"image_id with url", map[string]any{"image_id": up.ID, "url": "https://mirror.example/x.qcow2", "checksum": sum, "name": "x", "all_pools": true}, 400, "invalid_request"},
		{"unknown image", map[string]any{"image_id": "no-such-image", "all_pools": true}, 404, "not_found"},
	} {
		checkRefused(t, s, tc.body, tc.status, tc.code, "")
	}
	// An upload created and not sent: its image is not READY.
	loc := create(t, s, 1<<20, meta("pool_id", "p2", "name", "half.qcow2"))
	half := path.Base(loc)
	checkRefused(t, s, map[string]any{"image_id": half, "all_pools": true}, 409, "conflict", "cloudimages images wait "+half)

	var d api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"image_id": up.ID, "all_pools": true, "max_parallel": 1}, &d, http.StatusAccepted)
	if d.Source.ImageID != up.ID || d.Checksum != sum {
		t.Fatalf("distribution source %+v checksum %s, want image %s with its file checksum", d.Source, d.Checksum, up.ID)
	}
	d = waitDistribution(t, s, d.ID, 3*time.Minute)
	if d.Status != "READY" || len(d.Copies) != 3 || d.MirrorBytes != 0 {
		t.Fatalf("distribution ended %s with %d mirror bytes and copies %+v, want READY in 3 pools from no mirror", d.Status, d.MirrorBytes, d.Copies)
	}
	for _, c := range d.Copies {
		img := getImage(t, s, c.ImageID)
		file := filepath.Join(s.PoolDir(c.PoolID, img.NodeID), agentclient.ImagesDir, img.FileName)
		if got := fileSHA256(t, file); got != sum || img.FileChecksum != sum || img.FileName != up.FileName {
			t.Errorf("pool %s: %s hashes %s, its image says %s; want %s under the upload's name %s", c.PoolID, file, got, img.FileChecksum, sum, up.FileName)
		}
		if c.Status != "READY" || c.BytesFromMirror != 0 {
			t.Errorf("pool %s: copy %s with %d bytes from the mirror, want READY from none", c.PoolID, c.Status, c.BytesFromMirror)
		}
		switch c.PoolID {
		case "p1":
			if c.ImageID != up.ID || !c.Adopted || c.Source != "upload" {
				t.Errorf("p1: copy %+v, want the upload itself adopted, source upload", c)
			}
		default:
			if !strings.HasPrefix(c.Source, "node:") || c.Source == "node:"+img.NodeID || img.Source != "peer" || c.BytesFromPeers != int64(len(data)) {
				t.Errorf("pool %s: copy from %q (%d bytes from peers), image source %q; want a peer copy of the whole file", c.PoolID, c.Source, c.BytesFromPeers, img.Source)
			}
		}
	}
	recordHistory(t, s, d.WorkflowID, "distribute-image.json")
	var again api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"image_id": up.ID, "all_pools": true}, &again, http.StatusOK)
	if again.ID != d.ID || again.Status != "READY" {
		t.Fatalf("posted again: %s %s, want %s READY", again.ID, again.Status, d.ID)
	}
	// The CLI's --image asks for the same, and says where the copies came from.
	r := cli(t, cliEnv(s, s.API.Token), "dist", "create", "--image", up.ID, "--all-pools", "--wait")
	want := fmt.Sprintf("distribution %s READY: image %s (golden.qcow2) into 3/3 pools, 2 from peers, 1 already there", d.ID, up.ID)
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("dist create --image --wait: %s\nwant stdout with %q", r, want)
	}
	if r := cli(t, cliEnv(s, s.API.Token), "dist", "create", "--image", up.ID, "cirros-0.6.3", "--all-pools"); r.code != 2 || !strings.Contains(r.stderr, "not both") {
		t.Fatalf("dist create --image with a catalog id: %s, want exit 2 saying not both", r)
	}
}

// TestDistributionOfAnUploadWhoseNodeIsKilledFailsTheCopiesClearly: the
// upload's node is killed (SIGKILL) before the distribution starts: with
// no mirror to fall back to, the copies into p2 and p3 fail, each saying
// which node could not be read, and the distribution ends PARTIAL (p1's
// upload is still its READY copy) in bounded time, rather than hanging.
// Then, as the error says, the node is brought back and the distribution
// posted again: it copies p2 and p3 and ends READY.
func TestDistributionOfAnUploadWhoseNodeIsKilledFailsTheCopiesClearly(t *testing.T) {
	s := airGappedStack(t)
	data := testenv.QCOW2Image(2<<20, 42)
	up := uploadInto(t, s, "p1", "lonely.qcow2", data)
	s.Agent("node-1").Kill()

	start := time.Now()
	var d api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"image_id": up.ID, "all_pools": true}, &d, http.StatusAccepted)
	d = waitDistribution(t, s, d.ID, 3*time.Minute)
	took := time.Since(start)
	t.Logf("the distribution ended %s after %s: %s", d.Status, took.Round(time.Second), d.Message)
	if d.Status != "PARTIAL" || fmt.Sprint(d.FailedPools) != "[p2 p3]" {
		t.Fatalf("distribution ended %s, failed pools %v, copies %+v; want PARTIAL with p2 and p3 failed", d.Status, d.FailedPools, d.Copies)
	}
	for _, c := range d.Copies {
		if c.PoolID == "p1" {
			if c.Status != "READY" || c.ImageID != up.ID {
				t.Errorf("p1: %+v, want the upload, READY", c)
			}
			continue
		}
		if c.Status != "FAILED" || c.Error == nil || (c.Error.Code != "node_unreachable" && c.Error.Code != "no_node_available") ||
			!strings.Contains(c.Error.Message, "node-1") || !strings.Contains(c.Error.Message, "no mirror") {
			t.Errorf("pool %s: copy %s, error %+v; want FAILED node_unreachable or no_node_available naming node-1 and saying there is no mirror", c.PoolID, c.Status, c.Error)
		}
		if img := getImage(t, s, c.ImageID); img.Status != "FAILED" {
			t.Errorf("pool %s: its image is %s, want FAILED", c.PoolID, img.Status)
		}
		if c.PoolID == "p2" {
			recordHistory(t, s, "image-"+c.ImageID, "image-copy-source-killed.json")
		}
	}
	recordHistory(t, s, d.WorkflowID, "distribute-image-source-killed.json")

	// As the error says: bring the node back, post the same distribution
	// again; only p2 and p3 are copied, now READY with the upload's bytes.
	restartAgent(t, s, s.Agent("node-1"))
	var again api.Distribution
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", map[string]any{"image_id": up.ID, "all_pools": true}, &again, http.StatusOK)
	if again.ID != d.ID {
		t.Fatalf("posted again: %s, want the same distribution %s", again.ID, d.ID)
	}
	again = waitDistribution(t, s, d.ID, 3*time.Minute)
	if again.Status != "READY" {
		t.Fatalf("retried after node-1 came back: %s, copies %+v; want READY", again.Status, again.Copies)
	}
	sum := testenv.SHA256(data)
	for _, c := range again.Copies {
		img := getImage(t, s, c.ImageID)
		file := filepath.Join(s.PoolDir(c.PoolID, img.NodeID), agentclient.ImagesDir, img.FileName)
		if got := fileSHA256(t, file); got != sum || img.FileChecksum != sum {
			t.Errorf("pool %s: %s hashes %s (image says %s), want the upload's %s", c.PoolID, file, got, img.FileChecksum, sum)
		}
	}
}

// checkRefused posts a distribution that must be refused with status and
// code (and a message saying says, when given), and leaves none behind.
func checkRefused(t *testing.T, s *testenv.Stack, body map[string]any, status int, code, says string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	s.API.MustDo(t, http.MethodPost, "/v1/distributions", body, &e, status)
	if e.Error.Code != code || !strings.Contains(e.Error.Message, says) {
		t.Errorf("%v: %s %q, want %s saying %q", body, e.Error.Code, e.Error.Message, code, says)
	}
	var list struct{ Items []api.Distribution }
	s.API.MustDo(t, http.MethodGet, "/v1/distributions", nil, &list, http.StatusOK)
	if len(list.Items) != 0 {
		t.Errorf("%v was refused and left distributions %+v", body, list.Items)
	}
}
