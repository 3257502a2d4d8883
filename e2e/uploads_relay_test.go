package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/tusclient"
)

// tusAt sends one request of the protocol to the API at base.
func tusAt(t *testing.T, base, token, method, path string, headers map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp
}

// offsetAt is the upload's offset as the API at base answers HEAD.
func offsetAt(t *testing.T, base, token, loc string) int {
	t.Helper()
	resp := tusAt(t, base, token, http.MethodHead, loc, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s%s: %s", base, loc, resp.Status)
	}
	off, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	if err != nil {
		t.Fatalf("HEAD %s%s: Upload-Offset %q", base, loc, resp.Header.Get("Upload-Offset"))
	}
	return off
}

// finishAt sends the rest of data from the offset the API at base has,
// as a client resuming does: a node still ending the PATCH before (423)
// or an offset that moved meanwhile (409) is looked at again.
func finishAt(t *testing.T, base, token, loc string, data []byte) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		off := offsetAt(t, base, token, loc)
		resp := tusAt(t, base, token, http.MethodPatch, loc, map[string]string{"Content-Type": "application/offset+octet-stream",
			"Upload-Offset": strconv.Itoa(off)}, data[off:])
		switch {
		case resp.StatusCode == http.StatusNoContent:
			if got := resp.Header.Get("Upload-Offset"); got != strconv.Itoa(len(data)) {
				t.Fatalf("PATCH of the rest from %d answered Upload-Offset %s, want %d", off, got, len(data))
			}
			return
		case (resp.StatusCode == http.StatusLocked || resp.StatusCode == http.StatusConflict) && time.Now().Before(deadline):
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("PATCH of the rest from %d: %s", off, resp.Status)
		}
	}
}

// openPatch starts a PATCH on its own TCP connection that declares
// declared bytes of body, so that the test writes the body itself and
// can cut it where it likes.
func openPatch(t *testing.T, base, token, loc string, offset, declared int) net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n", loc, u.Host, token, offset, declared)
	return conn
}

// TestUploadLongPatchCutMidBody sends the whole file as one PATCH, cuts
// the connection after an odd number of bytes, and resumes: the server
// keeps exactly the bytes that arrived (HEAD says so) and the rest, sent
// from there, makes the image READY with the file's checksum.
func TestUploadLongPatchCutMidBody(t *testing.T) {
	s := uploadStack(t)
	data := testenv.QCOW2Image(16<<20, 42)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "cut.qcow2", "checksum", testenv.SHA256(data)))
	const sent = 5<<20 + 12345 // not a multiple of any buffer on the way
	conn := openPatch(t, s.APIURL(), s.API.Token, loc, 0, len(data))
	for off := 0; off < sent; off += 256 << 10 {
		if _, err := conn.Write(data[off:min(off+256<<10, sent)]); err != nil {
			t.Fatalf("writing the body at %d: %v", off, err)
		}
	}
	// The connection ends with the body a third sent: what the API and
	// the node do is what they do for a browser tab closed mid-upload.
	conn.Close()
	var off int
	eventually(t, 30*time.Second, "the server keeps the bytes of the cut PATCH", func() bool {
		off = offsetAt(t, s.APIURL(), s.API.Token, loc)
		return off == sent
	})
	if img := getImage(t, s, strings.TrimPrefix(loc, "/v1/uploads/")); img.Status != "DOWNLOADING" {
		t.Fatalf("after the cut the upload is %s, want DOWNLOADING (waiting for the rest)", img.Status)
	}
	finishAt(t, s.APIURL(), s.API.Token, loc, data)
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
	// An agent on plain HTTP gets the bodies socket to socket.
	if log := s.APIServer.Log(); !strings.Contains(log, "upload body relayed") || strings.Contains(log, "upload body streamed") {
		t.Error("the API did not relay the PATCH bodies to the plain-HTTP agent with RelayUpload (its log says no \"upload body relayed\", or says \"upload body streamed\")")
	}
}

// TestUploadThroughAgentsServingTLS: an agent reached over HTTPS cannot
// be relayed to socket to socket; the API streams the body through its
// TLS client instead, and the upload, cut and resumed, ends READY.
func TestUploadThroughAgentsServingTLS(t *testing.T) {
	ca := testenv.NewAgentCA(t)
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 1,
		APIToken:  "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		AgentArgs: []string{"--tls-cert", ca.CertFile, "--tls-key", ca.KeyFile},
		AgentTLS:  ca.ClientTLS,
		Env:       []string{"CLOUDIMAGES_AGENT_CA_FILE=" + ca.CAFile},
	})
	data := testenv.QCOW2Image(6<<20, 45)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "tls.qcow2", "checksum", testenv.SHA256(data)))
	const sent = 2<<20 + 4321
	conn := openPatch(t, s.APIURL(), s.API.Token, loc, 0, len(data))
	if _, err := conn.Write(data[:sent]); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// Through the HTTP client, what the API had buffered when the body
	// broke off is dropped with the connection to the node: the node has
	// at most what was sent, and the client resumes from what it has.
	var off int
	eventually(t, 30*time.Second, "the node keeps bytes of the cut PATCH", func() bool {
		off = offsetAt(t, s.APIURL(), s.API.Token, loc)
		return off > 0
	})
	if off > sent {
		t.Fatalf("the server has %d bytes, %d were sent", off, sent)
	}
	finishAt(t, s.APIURL(), s.API.Token, loc, data)
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
	if log := s.APIServer.Log(); !strings.Contains(log, "upload body streamed") || strings.Contains(log, "upload body relayed") {
		t.Error("the API did not stream the PATCH bodies to the TLS agent through its HTTP client")
	}
}

// TestUploadAPIRefusalMidBodyIsAnswered: a PATCH at the wrong offset is
// refused by the node before its body is read; the uploader, still
// sending, gets the 409 (not a reset connection) and the upload is
// unchanged.
func TestUploadAPIRefusalMidBodyIsAnswered(t *testing.T) {
	s := uploadStack(t)
	data := testenv.QCOW2Image(8<<20, 43)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "refused.qcow2", "checksum", testenv.SHA256(data)))
	if resp := patch(t, s, loc, 0, data[:1<<20]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first PATCH: %s", resp.Status)
	}
	conn := openPatch(t, s.APIURL(), s.API.Token, loc, 0, len(data)) // 0, but the upload is at 1 MiB
	go func() {
		for off := 0; off < len(data); off += 64 << 10 {
			if _, err := conn.Write(data[off : off+64<<10]); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the API did not answer the PATCH at a wrong offset: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusConflict || !bytes.Contains(body, []byte(`"conflict"`)) {
		t.Fatalf("PATCH at a wrong offset: %s %s, want 409 conflict", resp.Status, body)
	}
	if off := offsetAt(t, s.APIURL(), s.API.Token, loc); off != 1<<20 {
		t.Fatalf("after the refused PATCH the upload is at %d, want %d", off, 1<<20)
	}
	finishAt(t, s.APIURL(), s.API.Token, loc, data)
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
}

// TestUploadAcrossAPIReplicasOnPostgres runs two API processes on one
// PostgreSQL database, as behind a load balancer: the upload is created
// on the first and half sent there, the second sees its offset, the first
// is killed (SIGKILL) in the middle of a long PATCH, and the second takes
// the rest from the offset the node kept.
func TestUploadAcrossAPIReplicasOnPostgres(t *testing.T) {
	dbURL, ok := testenv.Postgres(t) // fails the test in CI (CI=true) when no database is configured
	if !ok {
		t.Skipf("%s is not set: this machine runs the end-to-end suite on SQLite only", testenv.PostgresEnv)
	}
	s := testenv.StartStack(t, testenv.StackOptions{
		DatabaseURL: dbURL,
		APIToken:    "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Env:         []string{"CLOUDIMAGES_UPLOAD_TTL=" + uploadTTL.String()},
		WorkerArgs:  []string{"--node-grace", "2s", "--heartbeat-timeout", "6s", "--no-node-timeout", "10s"},
	})
	_, second := s.AddAPI("api-2")
	token := s.API.Token
	data := testenv.QCOW2Image(24<<20, 44)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "replicas.qcow2", "checksum", testenv.SHA256(data)))
	id := strings.TrimPrefix(loc, "/v1/uploads/")

	const quarter = 6 << 20
	if resp := patch(t, s, loc, 0, data[:quarter]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH of the first quarter on the first API: %s", resp.Status)
	}
	if off := offsetAt(t, second, token, loc); off != quarter {
		t.Fatalf("the second API says the upload is at %d, the first acknowledged %d", off, quarter)
	}

	// The rest as one PATCH to the first API, sent slowly; once the node
	// has more of it (its checkpoints show in HEAD on the second API), the
	// first API is killed.
	conn := openPatch(t, s.APIURL(), token, loc, quarter, len(data)-quarter)
	firstPid := s.APIServer.Pid()
	killed := false
	for off := quarter; off < len(data) && !killed; off += 128 << 10 {
		if _, err := conn.Write(data[off:min(off+128<<10, len(data))]); err != nil {
			t.Fatalf("writing the body at %d before the kill: %v", off, err)
		}
		time.Sleep(20 * time.Millisecond)
		if offsetAt(t, second, token, loc) >= quarter+2<<20 {
			s.APIServer.Kill()
			killed = true
		}
	}
	if !killed {
		t.Fatal("the node reported no progress of the long PATCH before it ended; the kill did not happen mid-body")
	}
	if s.APIServer.Running() || s.APIServer.Pid() != firstPid {
		t.Fatalf("the first API is still running (pid %d)", s.APIServer.Pid())
	}
	var kept int
	eventually(t, 30*time.Second, "the node keeps what came of the PATCH cut by the kill", func() bool {
		prev := kept
		kept = offsetAt(t, second, token, loc)
		return kept == prev && kept > quarter
	})
	if kept >= len(data) {
		t.Fatalf("the node has all %d bytes though the first API was killed mid-body", kept)
	}
	finishAt(t, second, token, loc, data)
	c2 := &testenv.APIClient{Client: &api.Client{BaseURL: second, Token: token}}
	checkUploaded(t, waitAPIStatus(t, c2, id, "READY", time.Minute), data, true)
	t.Logf("created and %d bytes sent on the first API, %d kept when it was killed, the rest sent to the second", quarter, kept)
}

// TestUploadIntoARawPoolIsConverted uploads a qcow2 with the CLI's client
// into a pool that keeps raw images: the node converts it once every byte
// is in, and the image is READY in raw format, with the checksum of what
// was uploaded, the file's own file_checksum, and the same disk.
func TestUploadIntoARawPoolIsConverted(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.SkipUnlessCI(t, "qemu-img is missing: run `make test-deps` (Debian's qemu-utils)")
	}
	s := testenv.StartStack(t, testenv.StackOptions{
		APIToken: "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Agents:   1,
		Pools:    []testenv.StackPool{{ID: "raw-1", NodeIDs: []string{"node-1"}, ImageFormat: "raw"}},
	})
	const virtual = 32 << 20
	src := randomQCOW2(t, virtual)
	c := &tusclient.Client{BaseURL: s.APIURL(), Token: s.API.Token, StateDir: t.TempDir(), RetryDelay: 200 * time.Millisecond}
	res, err := c.Do(ctx(t), tusclient.Upload{Path: src.path, PoolID: "raw-1", Name: "uploaded", Checksum: testenv.SHA256(src.data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := waitStatus(t, s, res.ImageID, "READY", 2*time.Minute)
	if img.Format != "raw" || !strings.HasSuffix(img.FileName, ".raw") || filepath.Base(img.Path) != img.FileName {
		t.Errorf("published %s at %s in format %q; want a .raw file in raw format", img.FileName, img.Path, img.Format)
	}
	fi, err := os.Stat(img.Path)
	if err != nil {
		t.Fatalf("the published file: %v", err)
	}
	if img.VirtualSizeBytes == nil || *img.VirtualSizeBytes != virtual || fi.Size() != virtual {
		t.Errorf("file of %d bytes, virtual_size_bytes %v; want both %d", fi.Size(), img.VirtualSizeBytes, virtual)
	}
	if img.Checksum != testenv.SHA256(src.data) || img.Unverified {
		t.Errorf("checksum %s (unverified %v); want the uploaded qcow2's %s, verified", img.Checksum, img.Unverified, testenv.SHA256(src.data))
	}
	if got := fileSHA256(t, img.Path); img.FileChecksum != got {
		t.Errorf("file_checksum %s, the published file's sha256 is %s", img.FileChecksum, got)
	}
	if out, err := exec.Command("qemu-img", "compare", src.path, img.Path).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: the published disk differs from the uploaded one: %v\n%s", err, out)
	}
	if left := partials(t, s.PoolDir("raw-1", "node-1")); len(left) > 0 {
		t.Errorf("work files left in the pool: %v", left)
	}
}
