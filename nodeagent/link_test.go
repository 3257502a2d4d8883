package nodeagent_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestLinkReplacesTheNameAtomicallyAndKeepsTheOldInode: the link is a hard
// link to the target; moving it to another file leaves a reader of the old
// one with its bytes, and the old file itself in place; no temporary name
// is left behind.
func TestLinkReplacesTheNameAtomicallyAndKeepsTheOldInode(t *testing.T) {
	h := newHarness(t, nil)
	images := filepath.Join(h.pool, agentclient.ImagesDir)
	for name, content := range map[string]string{"x-1.qcow2": "build one", "x-2.qcow2": "build two"} {
		if err := os.WriteFile(filepath.Join(images, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var health agentclient.Health
	if health, _ = h.client.Health(ctx(t)); !health.Supports(agentclient.FeatureLink) {
		t.Fatalf("health does not name %q: %v", agentclient.FeatureLink, health.Features)
	}
	l, err := h.client.Link(ctx(t), "pool-1", "x-latest.qcow2", "x-1.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if l.Path != filepath.Join(images, "x-latest.qcow2") || inodeOf(t, l.Path) != inodeOf(t, filepath.Join(images, "x-1.qcow2")) {
		t.Fatalf("link %+v is not a hard link to x-1.qcow2", l)
	}
	reader, err := os.Open(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := h.client.Link(ctx(t), "pool-1", "x-latest.qcow2", "x-2.qcow2"); err != nil {
		t.Fatal(err)
	}
	if inodeOf(t, l.Path) != inodeOf(t, filepath.Join(images, "x-2.qcow2")) {
		t.Fatal("the link did not move to x-2.qcow2")
	}
	buf := make([]byte, 9)
	if _, err := reader.ReadAt(buf, 0); err != nil || string(buf) != "build one" {
		t.Fatalf("the reader of the old link reads %q, %v", buf, err)
	}
	if b, _ := os.ReadFile(filepath.Join(images, "x-1.qcow2")); string(b) != "build one" {
		t.Fatalf("x-1.qcow2 = %q after the link moved", b)
	}
	work, _ := os.ReadDir(filepath.Join(images, ".downloads"))
	for _, e := range work {
		if strings.HasSuffix(e.Name(), ".link") {
			t.Errorf("temporary link left behind: %s", e.Name())
		}
	}
}

// TestLinkRefusesWhatIsNotAPublishedFile: a missing target, a symlink (it
// could point out of the pool), a directory in the way, a bad name, an
// unknown pool and a link to itself are refused with the contract's codes,
// and nothing outside the pool is touched.
func TestLinkRefusesWhatIsNotAPublishedFile(t *testing.T) {
	h := newHarness(t, nil)
	images := filepath.Join(h.pool, agentclient.ImagesDir)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(images, "evil.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "ok.qcow2"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(images, "dir-latest.qcow2"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what, pool, name, body string
		status                 int
		code                   string
	}{
		{"missing target", "pool-1", "x-latest.qcow2", `{"target": "nope.qcow2"}`, 404, fault.NotFound},
		{"symlink target", "pool-1", "x-latest.qcow2", `{"target": "evil.qcow2"}`, 400, fault.InvalidRequest},
		{"directory in the way", "pool-1", "dir-latest.qcow2", `{"target": "ok.qcow2"}`, 409, fault.Conflict},
		{"traversal", "pool-1", "x-latest.qcow2", `{"target": "../../secret"}`, 400, fault.InvalidRequest},
		{"itself", "pool-1", "ok.qcow2", `{"target": "ok.qcow2"}`, 400, fault.InvalidRequest},
		{"unknown pool", "nope", "x-latest.qcow2", `{"target": "ok.qcow2"}`, 404, fault.PoolNotFound},
		{"not JSON", "pool-1", "x-latest.qcow2", `{`, 400, fault.InvalidRequest},
	} {
		status, body := rawRequest(t, http.MethodPut, h.http.URL+"/v1/pools/"+tc.pool+"/links/"+tc.name, testToken, tc.body)
		if status != tc.status || !strings.Contains(body, `"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.what, status, body, tc.status, tc.code)
		}
	}
	if status, _ := rawRequest(t, http.MethodPut, h.http.URL+"/v1/pools/pool-1/links/x-latest.qcow2", "wrong", `{"target": "ok.qcow2"}`); status != 401 {
		t.Errorf("without the token: %d, want 401", status)
	}
	if _, err := os.Lstat(filepath.Join(images, "x-latest.qcow2")); !os.IsNotExist(err) {
		t.Errorf("a refused link left x-latest.qcow2: %v", err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "secret" {
		t.Error("the file outside the pool changed")
	}
}
