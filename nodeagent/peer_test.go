package nodeagent_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

const peerSecret = "cluster-secret-for-peer-copies"

// peerAgent is an in-process agent on a real socket whose token is its
// node credential, as in production, so tokens minted from it open it.
type peerAgent struct {
	*harness
	nodeID, cred string
}

func newPeerAgent(t *testing.T, nodeID string, change func(*nodeagent.Config)) *peerAgent {
	t.Helper()
	cred := nodeauth.Credential(peerSecret, nodeID)
	h := newHarness(t, func(c *nodeagent.Config) {
		c.NodeID, c.Token = nodeID, cred
		if change != nil {
			change(c)
		}
	})
	h.client = agentclient.New(h.http.URL, cred)
	return &peerAgent{harness: h, nodeID: nodeID, cred: cred}
}

// publish downloads data from the agent's own mirror into pool-1 as name.
func (a *peerAgent) publish(name string, data []byte) agentclient.Download {
	a.t.Helper()
	u := a.up.AddFile(name, data)
	a.start(agentclient.DownloadRequest{ID: "pub-" + strings.TrimSuffix(name, ".qcow2"), URL: u, FileName: name, Checksum: testenv.SHA256(data)})
	d := waitFinished(a.t, a.client, "pub-"+strings.TrimSuffix(name, ".qcow2"))
	assertPublished(a.t, d, a.pool, data, testenv.SHA256(data))
	return d
}

// peerOf names a's published file as a peer source, with a fresh token.
func (a *peerAgent) peerOf(name string) *agentclient.PeerSource {
	return &agentclient.PeerSource{NodeID: a.nodeID, Address: a.http.URL, PoolID: "pool-1", FileName: name,
		Token: nodeauth.MintFileRead(a.cred, "pool-1", name, time.Now().Add(10*time.Minute))}
}

// fileURL is the URL of a's file route for name.
func (a *peerAgent) fileURL(name string) string {
	return a.http.URL + nodeauth.FileReadPath("pool-1", name)
}

// metric reads one sample of the agent's /metrics.
func (a *peerAgent) metric(name string) float64 {
	a.t.Helper()
	status, body := rawRequest(a.t, http.MethodGet, a.http.URL+"/metrics", a.cred, "")
	if status != http.StatusOK {
		a.t.Fatalf("GET /metrics: %d %s", status, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				a.t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	a.t.Fatalf("no metric %s in /metrics", name)
	return 0
}

// get sends one request without following redirects and returns the
// answer with its whole body.
func get(t *testing.T, method, url, token string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestPublishedFileServedWithRangeToPeers: GET and HEAD of a published
// file with a token scoped to it; Range and If-Range as a resuming copy
// uses them; an ETag that is the file's checksum when the agent published
// it (so every copy agrees), the file's identity otherwise; the bytes
// served counted in /metrics.
func TestPublishedFileServedWithRangeToPeers(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	data := testenv.QCOW2Image(1<<20, 1)
	d := a.publish("img.qcow2", data)
	tok := nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", time.Now().Add(time.Minute))
	served := 0

	resp, body := get(t, http.MethodGet, a.fileURL("img.qcow2"), tok, nil)
	served += len(body)
	wantETag := `"` + strings.Replace(d.FileChecksum, ":", "-", 1) + `"`
	if resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Fatalf("GET: %s, %d bytes; want 200 with the file", resp.Status, len(body))
	}
	if resp.Header.Get("ETag") != wantETag || resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("validators: ETag %q (want %q), Last-Modified %q, Accept-Ranges %q", resp.Header.Get("ETag"), wantETag, resp.Header.Get("Last-Modified"), resp.Header.Get("Accept-Ranges"))
	}
	lastModified := resp.Header.Get("Last-Modified")

	ranges := []struct {
		name   string
		header map[string]string
		status int
		want   []byte
	}{
		{"a range", map[string]string{"Range": "bytes=1000-1999"}, 206, data[1000:2000]},
		{"the rest", map[string]string{"Range": "bytes=524288-"}, 206, data[524288:]},
		{"If-Range with the ETag", map[string]string{"Range": "bytes=1000-", "If-Range": wantETag}, 206, data[1000:]},
		{"If-Range with the date", map[string]string{"Range": "bytes=1000-", "If-Range": lastModified}, 206, data[1000:]},
		{"If-Range with another ETag", map[string]string{"Range": "bytes=1000-", "If-Range": `"sha256-other"`}, 200, data},
		{"past the end", map[string]string{"Range": "bytes=2000000-"}, 416, nil},
	}
	for _, r := range ranges {
		resp, body := get(t, http.MethodGet, a.fileURL("img.qcow2"), tok, r.header)
		if resp.StatusCode != r.status || (r.want != nil && string(body) != string(r.want)) {
			t.Errorf("%s: %s with %d bytes; want %d with %d bytes", r.name, resp.Status, len(body), r.status, len(r.want))
		}
		if r.status != 416 {
			served += len(body)
		}
		if r.status == 206 {
			want := "bytes " + strconv.Itoa(len(data)-len(r.want)) + "-"
			if cr := resp.Header.Get("Content-Range"); r.name != "a range" && !strings.HasPrefix(cr, want) {
				t.Errorf("%s: Content-Range %q, want %s…", r.name, cr, want)
			}
		}
	}

	head, body := get(t, http.MethodHead, a.fileURL("img.qcow2"), tok, nil)
	if head.StatusCode != http.StatusOK || len(body) != 0 || head.ContentLength != int64(len(data)) || head.Header.Get("ETag") != wantETag {
		t.Errorf("HEAD: %s, %d body bytes, length %d, ETag %q", head.Status, len(body), head.ContentLength, head.Header.Get("ETag"))
	}

	// A file the agent did not publish itself (an operator copied it in):
	// served too, under an ETag of the file's identity.
	other := testenv.QCOW2Image(50_000, 2)
	if err := os.WriteFile(filepath.Join(a.pool, agentclient.ImagesDir, "placed.qcow2"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	ptok := nodeauth.MintFileRead(a.cred, "pool-1", "placed.qcow2", time.Now().Add(time.Minute))
	resp, body = get(t, http.MethodGet, a.fileURL("placed.qcow2"), ptok, nil)
	served += len(body)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || string(body) != string(other) || !strings.HasPrefix(etag, `"f-`) {
		t.Fatalf("placed file: %s, %d bytes, ETag %q", resp.Status, len(body), etag)
	}
	resp, body = get(t, http.MethodGet, a.fileURL("placed.qcow2"), ptok, map[string]string{"Range": "bytes=100-", "If-Range": etag})
	served += len(body)
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(other[100:]) {
		t.Errorf("placed file, If-Range with its ETag: %s, %d bytes", resp.Status, len(body))
	}

	if got := a.metric("cloudimages_nodeagent_served_bytes_total"); got != float64(served) {
		t.Errorf("served_bytes_total %v; the bodies held %d bytes", got, served)
	}
	if got := a.metric("cloudimages_nodeagent_file_reads_active"); got != 0 {
		t.Errorf("file_reads_active %v after every read ended", got)
	}
}

// TestFileReadTokenIsScopedToOneFileOfOneNode: the file route opens only
// to a token minted from this node's credential for this very file, not
// yet expired; never for another file, pool, method or node.
func TestFileReadTokenIsScopedToOneFileOfOneNode(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	data := testenv.QCOW2Image(100_000, 3)
	a.publish("img.qcow2", data)
	a.publish("other.qcow2", testenv.QCOW2Image(100_000, 4))
	soon := time.Now().Add(time.Minute)
	path := nodeauth.FileReadPath("pool-1", "img.qcow2")
	cases := []struct{ name, method, token string }{
		{"no token", http.MethodGet, ""},
		{"a token for another file", http.MethodGet, nodeauth.MintFileRead(a.cred, "pool-1", "other.qcow2", soon)},
		{"a token for another pool", http.MethodGet, nodeauth.MintFileRead(a.cred, "pool-2", "img.qcow2", soon)},
		{"an expired token", http.MethodGet, nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", time.Now().Add(-time.Second))},
		{"another node's credential", http.MethodGet, nodeauth.MintFileRead(nodeauth.Credential(peerSecret, "node-b"), "pool-1", "img.qcow2", soon)},
		{"the cluster secret", http.MethodGet, nodeauth.MintFileRead(peerSecret, "pool-1", "img.qcow2", soon)},
		{"a read token used to delete", http.MethodDelete, nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", soon)},
	}
	for _, c := range cases {
		resp, body := get(t, c.method, a.http.URL+path, c.token, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthorized"`) {
			t.Errorf("%s: %s %s; want 401 unauthorized", c.name, resp.Status, body)
		}
	}
	if resp, _ := get(t, http.MethodHead, a.http.URL+path, nodeauth.MintFileRead(a.cred, "pool-1", "other.qcow2", soon), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HEAD with a token for another file: %s; want 401", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(a.pool, agentclient.ImagesDir, "img.qcow2")); err != nil {
		t.Errorf("the file after a refused delete: %v", err)
	}
	resp, body := get(t, http.MethodGet, a.http.URL+path, nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", soon), nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Errorf("the right token: %s, %d bytes", resp.Status, len(body))
	}
}

// TestOnlyPublishedFilesAreServed: data in flight, the work folder, links
// (to partial data, or out of the pool), directories, names that climb
// out, and unknown pools are never served, whatever token comes with them.
func TestOnlyPublishedFilesAreServed(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	data := testenv.QCOW2Image(400_000, 5)
	a.up.AddFile("slow.qcow2", data)
	a.up.SetFault("slow.qcow2", testenv.Fault{StallAfterBytes: 200_000})
	a.start(agentclient.DownloadRequest{ID: "slow", URL: a.up.FileURL("slow.qcow2"), FileName: "slow.qcow2", Checksum: testenv.SHA256(data)})
	wait(t, a.client, "slow", "partly downloaded", func(d agentclient.Download) bool { return d.BytesDone >= 200_000 })
	images := filepath.Join(a.pool, agentclient.ImagesDir)
	part := partOf(t, a.pool, "slow")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("outside the pool"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"to-part.qcow2": filepath.Join(".downloads", filepath.Base(part)), "out.qcow2": secret} {
		if err := os.Symlink(target, filepath.Join(images, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(images, "dir.qcow2"), 0o755); err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Minute)
	// Each path carries a token minted for it exactly as sent, so only
	// the route's own checks stand between the caller and the file.
	paths := []string{
		nodeauth.FileReadPath("pool-1", "slow.qcow2"),
		nodeauth.FileReadPath("pool-1", ".downloads"),
		nodeauth.FileReadPath("pool-1", filepath.Base(part)),
		"/v1/pools/pool-1/files/.downloads%2F" + filepath.Base(part),
		nodeauth.FileReadPath("pool-1", "to-part.qcow2"),
		nodeauth.FileReadPath("pool-1", "out.qcow2"),
		nodeauth.FileReadPath("pool-1", "dir.qcow2"),
		nodeauth.FileReadPath("pool-1", "missing.qcow2"),
		"/v1/pools/pool-1/files/..%2F..%2F..%2Fetc%2Fpasswd",
		"/v1/pools/pool-1/files/%2E%2E",
		nodeauth.FileReadPath("pool-9", "slow.qcow2"),
	}
	for _, p := range paths {
		resp, body := get(t, http.MethodGet, a.http.URL+p, nodeauth.Mint(a.cred, http.MethodGet, p, soon), nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"not_found"`) {
			t.Errorf("GET %s: %s %.200s; want 404 not_found", p, resp.Status, body)
		}
		if strings.Contains(string(body), "outside the pool") || len(body) > 1000 {
			t.Errorf("GET %s served %d bytes of a file it must not", p, len(body))
		}
	}
	if got := a.metric("cloudimages_nodeagent_served_bytes_total"); got != 0 {
		t.Errorf("served_bytes_total %v; nothing may have been served", got)
	}
}

// partOf returns the path of a download's partial file.
func partOf(t *testing.T, poolDir, id string) string {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(poolDir, agentclient.ImagesDir, ".downloads", id+"~*.part"))
	if len(parts) != 1 {
		t.Fatalf("partial files of %s: %v", id, parts)
	}
	return parts[0]
}

// TestPeerCopyBetweenTwoAgents: an image one agent downloaded from the
// mirror is copied by another agent from it, over real sockets, verified
// against the file checksum and published; the mirror served the file
// once. The target refuses private networks for mirrors, yet reaches its
// peer on 127.0.0.1, given as a URL or as a bare host:port.
func TestPeerCopyBetweenTwoAgents(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	b := newPeerAgent(t, "node-b", func(c *nodeagent.Config) { c.AllowPrivateNetworks = false })
	data := testenv.QCOW2Image(3<<20, 6)
	src := a.publish("img.qcow2", data)
	if src.Source != agentclient.SourceMirror || src.BytesFromPeer != 0 {
		t.Errorf("mirror download: source %q, bytes_from_peer %d; want mirror, 0", src.Source, src.BytesFromPeer)
	}

	h, err := b.client.Health(ctx(t))
	if err != nil || !h.Supports(agentclient.FeaturePeerCopy) {
		t.Fatalf("health %v, %v: want feature %s", h.Features, err, agentclient.FeaturePeerCopy)
	}
	req := agentclient.DownloadRequest{ID: "copy-1", Peer: a.peerOf("img.qcow2"), PoolID: "pool-1", FileName: "img.qcow2",
		Checksum: src.FileChecksum, SizeBytes: int64(len(data)), Format: "qcow2"}
	if d := b.start(req); d.Source != agentclient.SourcePeer {
		t.Errorf("started copy: source %q, want peer", d.Source)
	}
	d := waitFinished(t, b.client, "copy-1")
	assertPublished(t, d, b.pool, data, src.FileChecksum)
	if d.Source != agentclient.SourcePeer || d.BytesFromPeer != int64(len(data)) || d.Mirrors != nil || d.FileChecksum != src.FileChecksum {
		t.Errorf("copy: source %q, bytes_from_peer %d, mirrors %v, file_checksum %s; want peer, %d, none, %s", d.Source, d.BytesFromPeer, d.Mirrors, d.FileChecksum, len(data), src.FileChecksum)
	}
	if n := a.up.Requests("img.qcow2"); n != 1 {
		t.Errorf("the mirror answered %d requests for the file; want 1", n)
	}
	if got := a.metric("cloudimages_nodeagent_served_bytes_total"); got != float64(len(data)) {
		t.Errorf("source served_bytes_total %v, want %d", got, len(data))
	}
	if got := b.metric("cloudimages_nodeagent_peer_bytes_total"); got != float64(len(data)) {
		t.Errorf("target peer_bytes_total %v, want %d", got, len(data))
	}

	// The same request with a fresh token, or naming another peer, is the
	// same download; another checksum under the same id is not.
	again := req
	again.Peer = a.peerOf("img.qcow2")
	again.Peer.Token = nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", time.Now().Add(20*time.Minute))
	if d, err := b.client.StartDownload(ctx(t), again); err != nil || d.State != agentclient.StateCompleted {
		t.Errorf("the same copy with a fresh token: %+v, %v; want the completed download", d, err)
	}
	other := req
	other.Checksum = testenv.SHA256([]byte("other"))
	if _, err := b.client.StartDownload(ctx(t), other); faultCode(err) != fault.Conflict {
		t.Errorf("another checksum under the same id: %v; want conflict", err)
	}

	// The peer's address as host:port (the nodes' registered address).
	bare := agentclient.DownloadRequest{ID: "copy-2", Peer: a.peerOf("img.qcow2"), PoolID: "pool-1", FileName: "img2.qcow2", Checksum: src.FileChecksum}
	bare.Peer.Address = strings.TrimPrefix(a.http.URL, "http://")
	b.start(bare)
	assertPublished(t, waitFinished(t, b.client, "copy-2"), b.pool, data, src.FileChecksum)

	// A mirror at the same kind of address stays refused.
	if _, err := b.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "mirror-1", URL: a.up.FileURL("img.qcow2"), PoolID: "pool-1", FileName: "m.qcow2", Checksum: src.FileChecksum}); faultCode(err) != fault.URLForbidden {
		t.Errorf("a mirror on 127.0.0.1 with private networks refused: %v; want url_forbidden", err)
	}
}

// TestPeerCopyWithWrongBytesFailsChecksumMismatch: bytes that are not the
// source image's fail the copy with checksum_mismatch, and nothing of
// them is left.
func TestPeerCopyWithWrongBytesFailsChecksumMismatch(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	b := newPeerAgent(t, "node-b", nil)
	data := testenv.QCOW2Image(1<<20, 7)
	a.publish("img.qcow2", data)
	other := testenv.QCOW2Image(1<<20, 8)
	b.start(agentclient.DownloadRequest{ID: "copy-bad", Peer: a.peerOf("img.qcow2"), FileName: "img.qcow2", Checksum: testenv.SHA256(other)})
	assertFailed(t, waitFinished(t, b.client, "copy-bad"), b.pool, fault.ChecksumMismatch, false)
}

// TestPeerRequestsAreChecked: a download names exactly one source; a peer
// source names its node, pool, file, address and token, and comes with a
// checksum; mirrors and credentials go with URLs only.
func TestPeerRequestsAreChecked(t *testing.T) {
	b := newPeerAgent(t, "node-b", nil)
	sum := testenv.SHA256([]byte("x"))
	good := func() agentclient.DownloadRequest {
		return agentclient.DownloadRequest{ID: "p", PoolID: "pool-1", FileName: "x.qcow2", Checksum: sum,
			Peer: &agentclient.PeerSource{NodeID: "node-a", Address: "10.0.0.5:9090", PoolID: "pool-1", FileName: "x.qcow2", Token: "cis1.1.x"}}
	}
	cases := []struct {
		name   string
		change func(r *agentclient.DownloadRequest)
	}{
		{"url and peer", func(r *agentclient.DownloadRequest) { r.URL = "https://mirror.example/x.qcow2" }},
		{"neither url nor peer", func(r *agentclient.DownloadRequest) { r.Peer = nil }},
		{"no checksum", func(r *agentclient.DownloadRequest) { r.Checksum = "" }},
		{"mirrors", func(r *agentclient.DownloadRequest) { r.Mirrors = []string{"https://mirror.example/x.qcow2"} }},
		{"a credential", func(r *agentclient.DownloadRequest) {
			r.Credential = &agentclient.Credential{Name: "c", Host: "10.0.0.5", Username: "u", Password: "p"}
		}},
		{"no token", func(r *agentclient.DownloadRequest) { r.Peer.Token = "" }},
		{"no address", func(r *agentclient.DownloadRequest) { r.Peer.Address = "" }},
		{"an ftp address", func(r *agentclient.DownloadRequest) { r.Peer.Address = "ftp://10.0.0.5:9090" }},
		{"an address with a path", func(r *agentclient.DownloadRequest) { r.Peer.Address = "http://10.0.0.5:9090/other" }},
		{"an address with a user", func(r *agentclient.DownloadRequest) { r.Peer.Address = "http://u:p@10.0.0.5:9090" }},
		{"a file name that climbs", func(r *agentclient.DownloadRequest) { r.Peer.FileName = "../x.qcow2" }},
		{"no pool", func(r *agentclient.DownloadRequest) { r.Peer.PoolID = "" }},
		{"no node", func(r *agentclient.DownloadRequest) { r.Peer.NodeID = "" }},
	}
	for _, c := range cases {
		r := good()
		c.change(&r)
		status, body := rawRequest(t, http.MethodPost, b.http.URL+"/v1/downloads", b.cred, mustJSON(t, r))
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid_request"`) {
			t.Errorf("%s: %d %s; want 400 invalid_request", c.name, status, body)
		}
	}
}

// fakePeer is a peer agent's file route played by a test: it serves data
// with Range (or, with redirect, answers 302 to it), and may drop the
// connection mid-body or refuse every later request.
type fakePeer struct {
	srv  *httptest.Server
	data []byte

	mu        sync.Mutex
	dropAfter int64 // cut the first response after this many bytes; 0: never
	dropped   bool
	down      bool // answer every request after the drop with 503
	redirect  string
	auth      []string // the Authorization of each request
}

func newFakePeer(t *testing.T, data []byte) *fakePeer {
	p := &fakePeer{data: data}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakePeer) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.auth = append(p.auth, r.Header.Get("Authorization"))
	drop, down, redirect := p.dropAfter > 0 && !p.dropped, p.dropped && p.down, p.redirect
	p.dropped = p.dropped || drop
	p.mu.Unlock()
	switch {
	case redirect != "":
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	case down:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("ETag", `"fake"`)
	if !drop {
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(p.data)))
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(p.data)))
	w.WriteHeader(http.StatusOK)
	w.Write(p.data[:p.dropAfter])
	http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler) // the connection is dropped mid-body
}

func (p *fakePeer) source(name string) *agentclient.PeerSource {
	return &agentclient.PeerSource{NodeID: "node-fake", Address: p.srv.URL, PoolID: "pool-1", FileName: name, Token: "cis1.0.fake-token"}
}

// TestPeerThatFailsMidCopyKeepsThePartialForTheNextSource: a peer that
// drops the connection and then stays down fails the copy retryable with
// its partial data and checkpoint kept; the same request naming a real
// peer resumes from there (that peer sends only the rest), and the copy
// is published, verified. A cancel of such a failed copy removes what it
// kept.
func TestPeerThatFailsMidCopyKeepsThePartialForTheNextSource(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	b := newPeerAgent(t, "node-b", nil)
	data := testenv.QCOW2Image(2<<20, 10)
	src := a.publish("img.qcow2", data)
	bad := newFakePeer(t, data)
	bad.dropAfter, bad.down = 1<<20+12345, true

	req := agentclient.DownloadRequest{ID: "copy-r", Peer: bad.source("img.qcow2"), PoolID: "pool-1", FileName: "img.qcow2", Checksum: src.FileChecksum, SizeBytes: int64(len(data))}
	b.start(req)
	failed := waitFinished(t, b.client, "copy-r")
	if failed.State != agentclient.StateFailed || failed.Error == nil || failed.Error.Code != fault.UpstreamError || !failed.Error.Retryable {
		t.Fatalf("copy from a peer that went down: %s %+v; want failed, retryable upstream_error", failed.State, failed.Error)
	}
	kept := failed.BytesDone
	if kept != bad.dropAfter {
		t.Errorf("failed copy shows %d bytes done; the peer sent %d before it dropped", kept, bad.dropAfter)
	}
	if fi, err := os.Stat(partOf(t, b.pool, "copy-r")); err != nil || fi.Size() != kept {
		t.Fatalf("kept partial data: %v, %v; want %d bytes", fi, err, kept)
	}

	req.Peer = a.peerOf("img.qcow2")
	if d, err := b.client.StartDownload(ctx(t), req); err != nil || d.State == agentclient.StateFailed {
		t.Fatalf("the copy started again from another peer: %+v, %v", d, err)
	}
	d := waitFinished(t, b.client, "copy-r")
	assertPublished(t, d, b.pool, data, src.FileChecksum)
	if got := a.metric("cloudimages_nodeagent_served_bytes_total"); got != float64(int64(len(data))-kept) {
		t.Errorf("the second peer served %v bytes; the copy kept %d of %d, so it should send only the rest", got, kept, len(data))
	}
	if d.BytesFromPeer != int64(len(data)) {
		t.Errorf("bytes_from_peer %d, want %d", d.BytesFromPeer, len(data))
	}

	// Cancelled after such a failure, the copy leaves nothing behind.
	bad2 := newFakePeer(t, data)
	bad2.dropAfter, bad2.down = 600_000, true
	b.start(agentclient.DownloadRequest{ID: "copy-c", Peer: bad2.source("c.qcow2"), FileName: "c.qcow2", Checksum: src.FileChecksum})
	if d := waitFinished(t, b.client, "copy-c"); d.State != agentclient.StateFailed {
		t.Fatalf("copy-c: %s", d.State)
	}
	partOf(t, b.pool, "copy-c")
	if err := b.client.CancelDownload(ctx(t), "copy-c"); err != nil {
		t.Fatal(err)
	}
	assertNoPartial(t, b.pool, "copy-c")
}

// TestPeerRefusingTheTokenFailsAtOnceAndAFreshTokenGoesOn: a peer's 401
// (an expired token) is not retried with the same token: the copy fails
// at once, retryable, saying so; the request sent again with a fresh
// token copies the file.
func TestPeerRefusingTheTokenFailsAtOnceAndAFreshTokenGoesOn(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	b := newPeerAgent(t, "node-b", func(c *nodeagent.Config) { c.MaxAttempts, c.RetryBackoff = 5, time.Hour })
	data := testenv.QCOW2Image(500_000, 11)
	src := a.publish("img.qcow2", data)
	req := agentclient.DownloadRequest{ID: "copy-t", Peer: a.peerOf("img.qcow2"), PoolID: "pool-1", FileName: "img.qcow2", Checksum: src.FileChecksum}
	req.Peer.Token = nodeauth.MintFileRead(a.cred, "pool-1", "img.qcow2", time.Now().Add(-time.Minute))
	b.start(req)
	d := waitFinished(t, b.client, "copy-t") // an hour's backoff: a retry would not end within the wait
	if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.UpstreamNotFound || !d.Error.Retryable || !strings.Contains(d.Error.Message, "token") {
		t.Fatalf("copy with an expired token: %s %+v; want failed at once, retryable upstream_not_found about the token", d.State, d.Error)
	}
	req.Peer = a.peerOf("img.qcow2")
	b.start(req)
	assertPublished(t, waitFinished(t, b.client, "copy-t"), b.pool, data, src.FileChecksum)
}

// TestPeerNamedWhileRetryingTakesOverAtOnce: while a copy waits to retry
// a peer that cannot be reached, the same request naming another peer
// wakes it, and it copies from that one without waiting out its backoff.
func TestPeerNamedWhileRetryingTakesOverAtOnce(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	b := newPeerAgent(t, "node-b", func(c *nodeagent.Config) { c.MaxAttempts, c.RetryBackoff = 5, time.Hour })
	data := testenv.QCOW2Image(500_000, 12)
	src := a.publish("img.qcow2", data)
	dead := a.peerOf("img.qcow2")
	dead.NodeID, dead.Address = "node-dead", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))
	req := agentclient.DownloadRequest{ID: "copy-w", Peer: dead, PoolID: "pool-1", FileName: "img.qcow2", Checksum: src.FileChecksum}
	b.start(req)
	req.Peer = a.peerOf("img.qcow2")
	if d, err := b.client.StartDownload(ctx(t), req); err != nil || d.Finished() {
		t.Fatalf("the same copy naming another peer: %+v, %v; want the running download", d, err)
	}
	assertPublished(t, waitFinished(t, b.client, "copy-w"), b.pool, data, src.FileChecksum)
}

// TestPeerRedirectIsJudgedAsAMirror: a peer's address passes the policy,
// but a redirect from it does not ride on that: to a private address it
// is refused (url_forbidden) when private networks are; where they are
// allowed, it is followed without the peer's token.
func TestPeerRedirectIsJudgedAsAMirror(t *testing.T) {
	data := testenv.QCOW2Image(300_000, 13)
	up := testenv.NewUpstream(t)
	target := up.AddFile("img.qcow2", data)
	peer := newFakePeer(t, data)
	peer.redirect = target

	strict := newPeerAgent(t, "node-b", func(c *nodeagent.Config) { c.AllowPrivateNetworks = false })
	strict.start(agentclient.DownloadRequest{ID: "copy-x", Peer: peer.source("img.qcow2"), FileName: "img.qcow2", Checksum: testenv.SHA256(data)})
	assertFailed(t, waitFinished(t, strict.client, "copy-x"), strict.pool, fault.URLForbidden, false)
	if n := up.Requests("img.qcow2"); n != 0 {
		t.Errorf("the redirect's target got %d requests; want none", n)
	}

	open := newPeerAgent(t, "node-c", nil)
	open.start(agentclient.DownloadRequest{ID: "copy-y", Peer: peer.source("img.qcow2"), FileName: "img.qcow2", Checksum: testenv.SHA256(data)})
	assertPublished(t, waitFinished(t, open.client, "copy-y"), open.pool, data, testenv.SHA256(data))
	for _, h := range up.Headers() {
		if a := h.Get("Authorization"); a != "" {
			t.Errorf("the redirect's target received Authorization %q: the peer's token went past the peer", a)
		}
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if len(peer.auth) == 0 || peer.auth[0] != "Bearer cis1.0.fake-token" {
		t.Errorf("the peer received Authorization %q; want its token", peer.auth)
	}
}

// TestRestartedAgentWaitsForThePeerToken: the token is kept in memory
// only; after a restart the copy waits with its partial data until the
// worker sends the request again, then resumes.
func TestRestartedAgentWaitsForThePeerToken(t *testing.T) {
	a := newPeerAgent(t, "node-a", nil)
	data := testenv.QCOW2Image(4<<20, 14)
	src := a.publish("img.qcow2", data)
	dir := t.TempDir()
	cred := nodeauth.Credential(peerSecret, "node-b")
	cfg := nodeagent.Config{NodeID: "node-b", Token: cred, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
		RetryBackoff: 10 * time.Millisecond, MaxBandwidth: 2 << 20}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := agentclient.New(newServer(t, srv), cred)
	req := agentclient.DownloadRequest{ID: "copy-s", Peer: a.peerOf("img.qcow2"), PoolID: "pool-1", FileName: "img.qcow2", Checksum: src.FileChecksum}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "copy-s", "a quarter done", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	srv.Close()
	records, _ := filepath.Glob(filepath.Join(dir, agentclient.ImagesDir, ".downloads", "*.json"))
	for _, r := range records {
		if b, _ := os.ReadFile(r); strings.Contains(string(b), req.Peer.Token) {
			t.Errorf("record %s holds the peer token", r)
		}
	}

	cfg.MaxBandwidth = 0
	srv2, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	c2 := agentclient.New(newServer(t, srv2), cred)
	held := wait(t, c2, "copy-s", "waiting for its token", func(d agentclient.Download) bool { return d.State == agentclient.StateWaitingCredential })
	if held.BytesDone < 1<<20 {
		t.Errorf("waiting copy shows %d bytes done; its partial data should be kept", held.BytesDone)
	}
	before := a.metric("cloudimages_nodeagent_served_bytes_total")
	req.Peer = a.peerOf("img.qcow2")
	if _, err := c2.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, c2, "copy-s"), dir, data, src.FileChecksum)
	if sent := a.metric("cloudimages_nodeagent_served_bytes_total") - before; sent > float64(len(data))-float64(held.BytesDone) {
		t.Errorf("the peer sent %v bytes after the restart; the copy held %d of %d", sent, held.BytesDone, len(data))
	}
}

// TestPeerKilledMidCopyResumesFromAnotherPeer is the crash test of peer
// copies: the source agent is a real process that gets SIGKILL while a
// target copies from it; the copy fails retryable with its partial data
// kept, and the same request naming another agent that holds the image
// resumes it there: that agent sends only the rest, and the published copy
// is verified.
func TestPeerKilledMidCopyResumesFromAnotherPeer(t *testing.T) {
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(8<<20, 15)
	src := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-a", Token: nodeauth.Credential(peerSecret, "node-a"), AllowPrivateNetworks: true})
	if _, err := src.Client().StartDownload(ctx(t), agentclient.DownloadRequest{ID: "pub", URL: up.AddFile("img.qcow2", data), PoolID: "pool-1", FileName: "img.qcow2", Checksum: testenv.SHA256(data)}); err != nil {
		t.Fatal(err)
	}
	published := waitFinished(t, src.Client(), "pub")
	assertPublished(t, published, src.PoolDir("pool-1"), data, testenv.SHA256(data))
	other := newPeerAgent(t, "node-c", nil)
	other.publish("img.qcow2", data)
	// The target reads at 2 MiB/s: time to see the copy under way and kill
	// its source.
	b := newPeerAgent(t, "node-b", func(c *nodeagent.Config) { c.MaxBandwidth = 2 << 20 })

	req := agentclient.DownloadRequest{ID: "copy-k", PoolID: "pool-1", FileName: "img.qcow2", Checksum: published.FileChecksum, SizeBytes: int64(len(data)),
		Peer: &agentclient.PeerSource{NodeID: "node-a", Address: src.Address(), PoolID: "pool-1", FileName: "img.qcow2",
			Token: nodeauth.MintFileRead(src.Token(), "pool-1", "img.qcow2", time.Now().Add(10*time.Minute))}}
	b.start(req)
	wait(t, b.client, "copy-k", "under way", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	src.Kill()
	failed := waitFinished(t, b.client, "copy-k")
	if failed.State != agentclient.StateFailed || failed.Error == nil || failed.Error.Code != fault.UpstreamError || !failed.Error.Retryable {
		t.Fatalf("copy whose source was killed: %s %+v; want failed, retryable upstream_error", failed.State, failed.Error)
	}
	kept := failed.BytesDone
	if kept <= 1<<20 || kept >= int64(len(data)) {
		t.Fatalf("the failed copy kept %d of %d bytes", kept, len(data))
	}

	req.Peer = other.peerOf("img.qcow2")
	b.start(req)
	d := waitFinished(t, b.client, "copy-k")
	assertPublished(t, d, b.pool, data, published.FileChecksum)
	if got := other.metric("cloudimages_nodeagent_served_bytes_total"); got != float64(int64(len(data))-kept) {
		t.Errorf("the second source sent %v bytes; the copy had kept %d of %d", got, kept, len(data))
	}
	t.Logf("killed source sent %d bytes, the second %d, of %d", kept, int64(len(data))-kept, len(data))
}

// tlsAgent is an in-process agent serving HTTPS with ca's certificate on
// a real socket, whose token is its node credential.
func tlsAgent(t *testing.T, nodeID string, ca testenv.CA, change func(*nodeagent.Config)) (*nodeagent.Server, *agentclient.Client, string, string) {
	t.Helper()
	cred := nodeauth.Credential(peerSecret, nodeID)
	dir := t.TempDir()
	cfg := nodeagent.Config{NodeID: nodeID, Token: cred, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
		RetryBackoff: 10 * time.Millisecond, MaxAttempts: 3, TLSCert: ca.CertFile, TLSKey: ca.KeyFile}
	if change != nil {
		change(&cfg)
	}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Cert}}
	hs.StartTLS()
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return srv, agentclient.New(hs.URL, cred, agentclient.WithTLS(ca.ClientTLS)), hs.URL, dir
}

// TestPeerCopyBetweenAgentsServingTLS: agents that serve HTTPS reach a
// peer given as a bare host:port over https, trusting its certificate
// through --ca-file; without the CA the copy fails on the certificate.
func TestPeerCopyBetweenAgentsServingTLS(t *testing.T) {
	ca := testenv.NewAgentCA(t)
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(1<<20, 16)
	_, src, srcURL, _ := tlsAgent(t, "node-a", ca, nil)
	if _, err := src.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "pub", URL: up.AddFile("img.qcow2", data), PoolID: "pool-1", FileName: "img.qcow2", Checksum: testenv.SHA256(data)}); err != nil {
		t.Fatal(err)
	}
	published := waitFinished(t, src, "pub")
	peer := func() *agentclient.PeerSource {
		return &agentclient.PeerSource{NodeID: "node-a", Address: strings.TrimPrefix(srcURL, "https://"), PoolID: "pool-1", FileName: "img.qcow2",
			Token: nodeauth.MintFileRead(nodeauth.Credential(peerSecret, "node-a"), "pool-1", "img.qcow2", time.Now().Add(time.Minute))}
	}

	_, trusting, _, dir := tlsAgent(t, "node-b", ca, func(c *nodeagent.Config) { c.CAFile = ca.CAFile })
	if _, err := trusting.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "copy", Peer: peer(), PoolID: "pool-1", FileName: "img.qcow2", Checksum: published.FileChecksum}); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, trusting, "copy"), dir, data, published.FileChecksum)

	_, untrusting, _, dir2 := tlsAgent(t, "node-c", ca, nil)
	if _, err := untrusting.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "copy", Peer: peer(), PoolID: "pool-1", FileName: "img.qcow2", Checksum: published.FileChecksum}); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, untrusting, "copy")
	assertFailed(t, d, dir2, fault.UpstreamError, false)
	if !strings.Contains(d.Error.Message, "--ca-file") {
		t.Errorf("failure %q does not say to give the CA with --ca-file", d.Error.Message)
	}
}
