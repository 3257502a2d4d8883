// Package e2e runs cloudimages end to end: the built binary as separate
// processes (Temporal dev server, workers, API, node agents), a local
// mirror with faults, and real kills, through the REST API and the
// temporal CLI.
package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workflows"
)

// imageNode returns the node doing (or that did) the download.
func imageNode(i api.Image) string {
	if i.NodeID != "" {
		return i.NodeID
	}
	return i.Progress.NodeID
}

// mirrorFile is a test image on the mirror.
type mirrorFile struct {
	name string
	url  string
	data []byte
	sum  string
}

var seed int64 = 1

// addImage puts a fresh qcow2-looking file of size bytes on the mirror.
func addImage(up *testenv.Upstream, name string, size int) mirrorFile {
	seed++
	data := testenv.QCOW2Image(size, seed)
	return mirrorFile{name: name, url: up.AddFile(name, data), data: data, sum: testenv.SHA256(data)}
}

// download posts a URL download into a pool and returns the answer.
func download(t *testing.T, s *testenv.Stack, f mirrorFile, poolID string, extra ...string) api.Image {
	t.Helper()
	body := map[string]any{"url": f.url, "name": strings.TrimSuffix(f.name, ".qcow2"), "checksum": f.sum, "pool_id": poolID}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	var img api.Image
	s.API.MustDo(t, http.MethodPost, "/v1/images", body, &img, http.StatusAccepted)
	if img.ID == "" {
		t.Fatalf("POST /v1/images answered an image without id: %+v", img)
	}
	return img
}

func getImage(t *testing.T, s *testenv.Stack, id string) api.Image {
	t.Helper()
	return getAPIImage(t, s.API, id)
}

// getAPIImage reads an image through any API client (a stack's or
// `cloudimages dev`'s).
func getAPIImage(t *testing.T, c *testenv.APIClient, id string) api.Image {
	t.Helper()
	var img api.Image
	c.MustDo(t, http.MethodGet, "/v1/images/"+id, nil, &img, http.StatusOK)
	return img
}

// waitImage polls the image until cond holds, failing after timeout.
func waitImage(t *testing.T, s *testenv.Stack, id string, timeout time.Duration, what string, cond func(api.Image) bool) api.Image {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		img := getImage(t, s, id)
		if cond(img) {
			return img
		}
		if img.Terminal() {
			t.Fatalf("image %s ended %s (error %+v) while waiting for %s", id, img.Status, img.Error, what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s: no %s after %s; now %s, progress %+v", id, what, timeout, img.Status, img.Progress)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus polls the image until it is terminal and checks its status.
func waitStatus(t *testing.T, s *testenv.Stack, id, want string, timeout time.Duration) api.Image {
	t.Helper()
	return waitAPIStatus(t, s.API, id, want, timeout)
}

// waitAPIStatus is waitStatus through any API client.
func waitAPIStatus(t *testing.T, c *testenv.APIClient, id, want string, timeout time.Duration) api.Image {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		img := getAPIImage(t, c, id)
		if img.Terminal() {
			if img.Status != want {
				t.Fatalf("image %s ended %s (error %+v), want %s", id, img.Status, img.Error, want)
			}
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s still %s after %s, want %s; progress %+v", id, img.Status, timeout, want, img.Progress)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantError checks that a failed image carries the error code and a
// message for a person (the contract: what happened and what to do). It
// reports whether the image has an error to look into further.
func wantError(t *testing.T, img api.Image, code string) bool {
	t.Helper()
	switch {
	case img.Error == nil:
		t.Errorf("image %s has no error, want %s", img.ID, code)
		return false
	case img.Error.Code != code:
		t.Errorf("image %s: error %+v, want %s", img.ID, *img.Error, code)
	case strings.TrimSpace(img.Error.Message) == "":
		t.Errorf("image %s: error %s has no message", img.ID, code)
	}
	return true
}

// waitMidDownload waits until a node is downloading the image and the
// mirror has sent at least minBytes of it.
func waitMidDownload(t *testing.T, s *testenv.Stack, up *testenv.Upstream, f mirrorFile, id string, minBytes int64) api.Image {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for up.BytesServed(f.name) < minBytes {
		if time.Now().After(deadline) {
			t.Fatalf("the mirror sent only %d bytes of %s in 60s", up.BytesServed(f.name), f.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return waitImage(t, s, id, 30*time.Second, "a node downloading", func(i api.Image) bool {
		return i.Status == "DOWNLOADING" && imageNode(i) != ""
	})
}

// checkReadyFile checks a READY image: its file at its path, the whole
// file, with the mirror's checksum.
func checkReadyFile(t *testing.T, img api.Image, f mirrorFile) {
	t.Helper()
	if img.Status != "READY" {
		t.Fatalf("image %s is %s, not READY", img.ID, img.Status)
	}
	if img.Checksum != f.sum {
		t.Errorf("image checksum %s, want %s", img.Checksum, f.sum)
	}
	if img.SizeBytes != int64(len(f.data)) {
		t.Errorf("image size_bytes %d, want %d", img.SizeBytes, len(f.data))
	}
	if got := fileSHA256(t, img.Path); got != f.sum {
		t.Errorf("file %s has %s, want %s", img.Path, got, f.sum)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatalf("the image file: %v", err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// checkNoData checks that a pool holds neither a published file of that
// name nor any partial download, on any node.
func checkNoData(t *testing.T, s *testenv.Stack, poolID, fileName string) {
	t.Helper()
	for _, p := range s.Pools() {
		if p.ID != poolID {
			continue
		}
		for _, node := range p.NodeIDs {
			dir := s.PoolDir(poolID, node)
			if fileName != "" {
				if _, err := os.Stat(filepath.Join(dir, "cloud-images", fileName)); err == nil {
					t.Errorf("%s is in pool %s on %s", fileName, poolID, node)
				}
			}
			for _, part := range partials(t, dir) {
				t.Errorf("partial data left in pool %s on %s: %s", poolID, node, part)
			}
		}
	}
}

// partials lists the .part files under a pool directory.
func partials(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".part") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// progressQuery asks the workflow for its progress through the temporal CLI.
func progressQuery(t *testing.T, s *testenv.Stack, workflowID string) workflows.ProgressState {
	t.Helper()
	out, err := s.TemporalCLI("workflow", "query", "--workflow-id", workflowID, "--name", workflows.ProgressQuery, "--output", "json")
	if err != nil {
		t.Fatalf("temporal workflow query: %v\n%s", err, out)
	}
	var resp struct {
		QueryResult []workflows.ProgressState `json:"queryResult"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.QueryResult) != 1 {
		t.Fatalf("temporal workflow query answered %s (%v)", out, err)
	}
	return resp.QueryResult[0]
}
