package nodeagent_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

func TestEveryRouteNeedsTheToken(t *testing.T) {
	h := newHarness(t, nil)
	routes := []struct{ method, path string }{
		{http.MethodGet, "/v1/health"},
		{http.MethodGet, "/v1/downloads"},
		{http.MethodPost, "/v1/downloads"},
		{http.MethodGet, "/v1/downloads/x"},
		{http.MethodDelete, "/v1/downloads/x"},
		{http.MethodDelete, "/v1/pools/pool-1/files/x.qcow2"},
		{http.MethodGet, "/v1/pools/pool-1/files/x.qcow2"},
		{http.MethodGet, "/metrics"},
		{http.MethodGet, "/nowhere"},
	}
	for _, r := range routes {
		for _, token := range []string{"", "wrong", testToken + "x", strings.ToUpper(testToken)} {
			status, body := rawRequest(t, r.method, h.http.URL+r.path, token, "{}")
			if status != http.StatusUnauthorized || !strings.Contains(body, `"code":"unauthorized"`) {
				t.Errorf("%s %s with token %q: %d %s; want 401 unauthorized", r.method, r.path, token, status, body)
			}
		}
	}
	if _, err := agentclient.New(h.http.URL, "wrong").Health(ctx(t)); faultCode(err) != fault.Unauthorized {
		t.Errorf("client with a wrong token: %v", err)
	}
	if status, _ := rawRequest(t, http.MethodGet, h.http.URL+"/v1/health", testToken, ""); status != http.StatusOK {
		t.Errorf("with the token: %d", status)
	}
	if _, err := nodeagent.New(nodeagent.Config{NodeID: "n", Pools: []nodeagent.PoolDir{{ID: "p", Dir: t.TempDir()}}}); err == nil {
		t.Error("an agent without a token started")
	}
}

func TestBadRequestsAreRefused(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.AllowPrivateNetworks = false })
	good := `"id":"ok-1","url":"https://mirror.example/x.qcow2","pool_id":"pool-1","file_name":"x.qcow2"`
	sum := strings.Repeat("ab", 32)
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"not JSON", `{`, 400, fault.InvalidRequest},
		{"unknown field", `{` + good + `,"path":"/etc"}`, 400, fault.InvalidRequest},
		{"trailing data", `{` + good + `}{}`, 400, fault.InvalidRequest},
		{"no id", `{"url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"id with slash", `{"id":"a/b","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"id dot dot", `{"id":"..","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"file ../", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"../../etc/passwd"}`, 400, fault.InvalidRequest},
		{"file absolute", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"/etc/passwd"}`, 400, fault.InvalidRequest},
		{"file in subdir", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"sub/x.qcow2"}`, 400, fault.InvalidRequest},
		{"hidden file", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":".downloads"}`, 400, fault.InvalidRequest},
		{"file with NUL", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x\u0000.qcow2"}`, 400, fault.InvalidRequest},
		{"no file", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1"}`, 400, fault.InvalidRequest},
		{"no url", `{"id":"a","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"ftp url", `{"id":"a","url":"ftp://m.example/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"file url", `{"id":"a","url":"file:///etc/passwd","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"loopback url", `{"id":"a","url":"http://127.0.0.1:9/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"metadata url", `{"id":"a","url":"http://169.254.169.254/latest","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"private url", `{"id":"a","url":"http://10.1.2.3/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"mapped loopback", `{"id":"a","url":"http://[::ffff:127.0.0.1]/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"IPv4-compatible loopback", `{"id":"a","url":"http://[::7f00:1]/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"6to4 metadata", `{"id":"a","url":"http://[2002:a9fe:a9fe::1]/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 422, fault.URLForbidden},
		{"url with password", `{"id":"a","url":"https://u:pw@m.example/x","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"url without host", `{"id":"a","url":"http:///x","pool_id":"pool-1","file_name":"x.qcow2"}`, 400, fault.InvalidRequest},
		{"bad checksum", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2","checksum":"md5:abc"}`, 400, fault.InvalidRequest},
		{"short checksum", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2","checksum":"sha256:abc"}`, 400, fault.InvalidRequest},
		{"negative size", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2","size_bytes":-1}`, 400, fault.InvalidRequest},
		{"bad format", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2","format":"../x"}`, 400, fault.InvalidRequest},
		{"unknown pool", `{"id":"a","url":"https://m.example/x","pool_id":"nope","file_name":"x.qcow2","checksum":"sha256:` + sum + `"}`, 404, fault.PoolNotFound},
		{"bigger than --max-image-size", `{"id":"a","url":"https://m.example/x","pool_id":"pool-1","file_name":"x.qcow2","size_bytes":9000000000000000000}`, 422, fault.TooLarge},
		{"huge body", `{"id":"` + strings.Repeat("a", 70000) + `"}`, 413, fault.PayloadTooLarge},
	}
	for _, tc := range cases {
		status, body := rawRequest(t, http.MethodPost, h.http.URL+"/v1/downloads", testToken, tc.body)
		if status != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s; want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	if status, body := rawRequest(t, http.MethodGet, h.http.URL+"/v1/downloads", testToken, ""); status != 200 || body != "{\"items\":[]}\n" {
		t.Errorf("refused requests left jobs behind: %s", body)
	}
	if status, body := rawRequest(t, http.MethodPut, h.http.URL+"/v1/downloads", testToken, ""); status != 405 || !strings.Contains(body, fault.MethodNotAllowed) {
		t.Errorf("PUT /v1/downloads: %d %s", status, body)
	}
	if status, body := rawRequest(t, http.MethodDelete, h.http.URL+"/v1/pools/pool-1/files/..%2F..%2Fetc%2Fpasswd", testToken, ""); status != 400 || !strings.Contains(body, fault.InvalidRequest) {
		t.Errorf("DELETE of a file outside the pool: %d %s", status, body)
	}
}

// TestPrivateAddressesRefusedAtDialTime: a name is judged by the address
// it resolves to when the agent connects, not by how it looks.
func TestPrivateAddressesRefusedAtDialTime(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.AllowPrivateNetworks = false })
	data := testenv.QCOW2Image(10_000, 1)
	h.up.AddFile("x.qcow2", data)
	port := h.up.URL()[strings.LastIndex(h.up.URL(), ":")+1:]
	h.start(agentclient.DownloadRequest{ID: "local", URL: "http://localhost:" + port + "/x.qcow2", FileName: "x.qcow2"})
	d := waitFinished(t, h.client, "local")
	assertFailed(t, d, h.pool, fault.URLForbidden, false)
	if !strings.Contains(d.Error.Message, "--allow-private-networks") {
		t.Errorf("message does not say what to do: %s", d.Error.Message)
	}
	if n := h.up.Requests("x.qcow2"); n != 0 {
		t.Errorf("the mirror on loopback got %d requests", n)
	}
}

func TestSymlinksInThePoolAreContained(t *testing.T) {
	h := newHarness(t, nil)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("do not touch"), 0o644); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(h.pool, agentclient.ImagesDir)
	// A partial file planted as a link out of the pool, and a published name
	// planted as a link to the same file.
	if err := os.Symlink(secret, filepath.Join(images, ".downloads", "planted~node-t.part")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(images, "taken.qcow2")); err != nil {
		t.Fatal(err)
	}
	data := testenv.QCOW2Image(200_000, 2)
	url := h.up.AddFile("planted.qcow2", data)
	h.start(agentclient.DownloadRequest{ID: "planted", URL: url, FileName: "planted.qcow2", Checksum: testenv.SHA256(data)})
	d := waitFinished(t, h.client, "planted")
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	if fi, err := os.Lstat(d.Path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("published image is not a regular file: %v %v", fi, err)
	}
	// A link at the published name is never replaced (nor written through).
	if _, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "taken", URL: url, PoolID: "pool-1", FileName: "taken.qcow2", Checksum: testenv.SHA256(data)}); faultCode(err) != fault.Conflict {
		t.Errorf("download to a name a link holds: %v; want conflict", err)
	}
	if fi, err := os.Lstat(filepath.Join(images, "taken.qcow2")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the planted link was replaced: %v %v", fi, err)
	}
	if got, _ := os.ReadFile(secret); !bytes.Equal(got, []byte("do not touch")) {
		t.Fatalf("the file outside the pool changed: %q", got)
	}
	// Deleting a planted link removes the link, never its target.
	if err := os.Symlink(secret, filepath.Join(images, "link.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := h.client.DeleteFile(ctx(t), "pool-1", "link.qcow2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(images, "link.qcow2")); err == nil {
		t.Error("link still there")
	}
	if got, err := os.ReadFile(secret); err != nil || !bytes.Equal(got, []byte("do not touch")) {
		t.Fatalf("deleting a link touched its target: %q %v", got, err)
	}
}

func TestPoolWhoseImagesDirLinksOutIsRefused(t *testing.T) {
	pool, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(pool, agentclient.ImagesDir)); err != nil {
		t.Fatal(err)
	}
	_, err := nodeagent.New(nodeagent.Config{NodeID: "n", Token: "t", Pools: []nodeagent.PoolDir{{ID: "p", Dir: pool}}})
	if err == nil || !strings.Contains(err.Error(), "pool p") {
		t.Fatalf("New with cloud-images linking out of the pool: %v; want an error naming the pool", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the agent wrote outside the pool: %v", entries)
	}
	if _, err := nodeagent.New(nodeagent.Config{NodeID: "n", Token: "t", Pools: []nodeagent.PoolDir{{ID: "p", Dir: filepath.Join(pool, "missing")}}}); err == nil {
		t.Error("New with a missing pool directory succeeded")
	}
}
