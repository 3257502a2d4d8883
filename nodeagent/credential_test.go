package nodeagent_test

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

const secret = "s3cret-do-not-leak"

// lockedBuffer collects an agent's logs, to look for secrets in them.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// assertNoSecret fails if the secret is in a pool's files (job records,
// partial data) or in the logs.
func assertNoSecret(t *testing.T, poolDir, logs string) {
	t.Helper()
	err := filepath.WalkDir(poolDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte("user:"+secret))) {
		t.Errorf("the logs hold the secret")
	}
}

func TestSourceCredentialOpensAMirror(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+secret))
	for _, tc := range []struct {
		name    string
		require string
		cred    agentclient.Credential
	}{
		{"basic auth", "Authorization: " + basic, agentclient.Credential{Name: "vendor", Username: "user", Password: secret}},
		{"header", "X-Api-Key: " + secret, agentclient.Credential{Name: "vendor", Headers: map[string]string{"X-Api-Key": secret}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			h := newHarness(t, func(c *nodeagent.Config) { c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
			data := testenv.QCOW2Image(1<<20, 5)
			u := h.up.AddFile("c.qcow2", data)
			h.up.SetFault("c.qcow2", testenv.Fault{RequireHeader: tc.require})

			h.start(agentclient.DownloadRequest{ID: "without", URL: u, FileName: "without.qcow2", Checksum: testenv.SHA256(data)})
			d := waitFinished(t, h.client, "without")
			assertFailed(t, d, h.pool, fault.UpstreamNotFound, false)
			if !strings.Contains(d.Error.Message, "401") || !strings.Contains(d.Error.Message, "credential") {
				t.Errorf("message %q: want the 401 and what to do about it", d.Error.Message)
			}

			cred := tc.cred
			cred.Host = hostOf(t, u)
			h.start(agentclient.DownloadRequest{ID: "with", URL: u, FileName: "with.qcow2", Checksum: testenv.SHA256(data), Credential: &cred})
			d = waitFinished(t, h.client, "with")
			assertPublished(t, d, h.pool, data, testenv.SHA256(data))
			assertNoSecret(t, h.pool, logs.String())
			if _, body := rawRequest(t, "GET", h.http.URL+"/v1/downloads", testToken, ""); strings.Contains(body, secret) || !strings.Contains(body, `"with"`) {
				t.Errorf("the agent's list of downloads holds the secret, or not the download: %s", body)
			}

			wrong := cred
			wrong.Password, wrong.Headers = "wrong", nil
			if tc.cred.Headers != nil {
				wrong.Username, wrong.Password, wrong.Headers = "", "", map[string]string{"X-Api-Key": "wrong"}
			}
			h.start(agentclient.DownloadRequest{ID: "wrong", URL: u, FileName: "wrong.qcow2", Checksum: testenv.SHA256(data), Credential: &wrong})
			d = waitFinished(t, h.client, "wrong")
			assertFailed(t, d, h.pool, fault.UpstreamNotFound, false)
			if !strings.Contains(d.Error.Message, `credential "vendor"`) {
				t.Errorf("message %q: want it to name the credential that was refused", d.Error.Message)
			}
		})
	}
}

// TestSourceCredentialGoesToItsHostOnly: neither another mirror of the
// list nor the target of a redirect to another host sees the credential,
// even where Go's client would pass Authorization on (same host name,
// another port).
func TestSourceCredentialGoesToItsHostOnly(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+secret))
	for _, tc := range []struct {
		name string
		cred agentclient.Credential
		seen func(hdr map[string][]string) bool
	}{
		{"basic auth", agentclient.Credential{Name: "v", Username: "user", Password: secret},
			func(hdr map[string][]string) bool {
				return strings.Contains(strings.Join(hdr["Authorization"], ","), basic)
			}},
		{"header", agentclient.Credential{Name: "v", Headers: map[string]string{"X-Api-Key": secret}},
			func(hdr map[string][]string) bool {
				return strings.Contains(strings.Join(hdr["X-Api-Key"], ","), secret)
			}},
	} {
		t.Run(tc.name+" redirect", func(t *testing.T) {
			h := newHarness(t, nil)
			other := testenv.NewUpstream(t)
			data := testenv.QCOW2Image(1<<20, 6)
			target := other.AddFile("r.qcow2", data)
			u := h.up.AddFile("r.qcow2", data)
			h.up.SetFault("r.qcow2", testenv.Fault{RedirectTo: target})
			cred := tc.cred
			cred.Host = hostOf(t, u)
			h.start(agentclient.DownloadRequest{ID: "r", URL: u, FileName: "r.qcow2", Checksum: testenv.SHA256(data), Credential: &cred})
			assertPublished(t, waitFinished(t, h.client, "r"), h.pool, data, testenv.SHA256(data))
			if hdrs := h.up.Headers(); len(hdrs) == 0 || !tc.seen(hdrs[0]) {
				t.Fatalf("the credential's own host did not get it: %v", hdrs)
			}
			for _, hdr := range other.Headers() {
				if tc.seen(hdr) {
					t.Errorf("the redirect's target got the credential: %v", hdr)
				}
			}
		})
		t.Run(tc.name+" mirror list", func(t *testing.T) {
			h := newHarness(t, nil)
			other := testenv.NewUpstream(t)
			data := testenv.QCOW2Image(1<<20, 7)
			u2 := other.AddFile("m.qcow2", data)
			u1 := h.up.FileURL("m.qcow2") // 404: the list moves on
			cred := tc.cred
			cred.Host = hostOf(t, u1)
			h.start(agentclient.DownloadRequest{ID: "m", URL: u1, Mirrors: []string{u2}, FileName: "m.qcow2", Checksum: testenv.SHA256(data), Credential: &cred})
			assertPublished(t, waitFinished(t, h.client, "m"), h.pool, data, testenv.SHA256(data))
			for _, hdr := range other.Headers() {
				if tc.seen(hdr) {
					t.Errorf("another mirror's host got the credential: %v", hdr)
				}
			}
		})
	}
}

func TestSourceCredentialIsValidated(t *testing.T) {
	h := newHarness(t, nil)
	u := h.up.AddFile("x.qcow2", []byte("x"))
	for _, tc := range []struct {
		cred agentclient.Credential
		want string
	}{
		{agentclient.Credential{Name: "a", Host: "elsewhere.example", Password: secret}, "none of the download's URLs"},
		{agentclient.Credential{Name: "a", Host: hostOf(t, u)}, "give headers, or username and password"},
		{agentclient.Credential{Name: "a", Host: hostOf(t, u), Headers: map[string]string{"Range": secret}}, "cannot be set"},
		{agentclient.Credential{Name: "a", Host: hostOf(t, u), Headers: map[string]string{"X-K": "a\r\nB: " + secret}}, "line break"},
		{agentclient.Credential{Name: "a", Host: "https://" + hostOf(t, u), Password: secret}, "without scheme"},
	} {
		_, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "bad", URL: u, PoolID: "pool-1", FileName: "x.qcow2", Credential: &tc.cred})
		if faultCode(err) != fault.InvalidRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want invalid_request saying %q", tc.cred, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error echoes the secret: %v", err)
		}
	}
}

// TestRestartedAgentWaitsForTheCredential: the agent keeps the secret in
// memory only, so after a restart the job waits, keeping its partial data,
// until the same request comes again with the credential; then it resumes.
func TestRestartedAgentWaitsForTheCredential(t *testing.T) {
	dir := t.TempDir()
	logs := &lockedBuffer{}
	up := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(4<<20, 9)
	u := up.AddFile("w.qcow2", data)
	up.SetFault("w.qcow2", testenv.Fault{BytesPerSecond: 2 << 20, RequireHeader: "X-Api-Key: " + secret})
	cfg := nodeagent.Config{NodeID: "n", Token: testToken, Pools: []nodeagent.PoolDir{{ID: "pool-1", Dir: dir}}, AllowPrivateNetworks: true,
		RetryBackoff: 10 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := agentclient.New(newServer(t, srv), testToken)
	cred := agentclient.Credential{Name: "vendor", Host: hostOf(t, u), Headers: map[string]string{"X-Api-Key": secret}}
	req := agentclient.DownloadRequest{ID: "w", URL: u, PoolID: "pool-1", FileName: "w.qcow2", Checksum: testenv.SHA256(data), Credential: &cred}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "w", "half done", func(d agentclient.Download) bool { return d.BytesDone > 1<<20 })
	srv.Close()
	assertNoSecret(t, dir, logs.String())

	srv2, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	c2 := agentclient.New(newServer(t, srv2), testToken)
	held := wait(t, c2, "w", "waiting for its credential", func(d agentclient.Download) bool { return d.State == agentclient.StateWaitingCredential })
	if held.BytesDone < 1<<20 {
		t.Errorf("waiting job shows %d bytes done; its partial data should be kept", held.BytesDone)
	}
	time.Sleep(300 * time.Millisecond) // it must stay held, not fail on a 401
	if d, _ := c2.Download(ctx(t), "w"); d.State != agentclient.StateWaitingCredential {
		t.Fatalf("state %s; want it still waiting for the credential", d.State)
	}
	// The same request without the secret is not the same download.
	noSecret := req
	noSecret.Credential = cred.Redacted()
	if _, err := c2.StartDownload(ctx(t), noSecret); faultCode(err) != fault.InvalidRequest {
		t.Errorf("request with a credential without its secret: %v; want invalid_request", err)
	}

	up.SetFault("w.qcow2", testenv.Fault{RequireHeader: "X-Api-Key: " + secret})
	if d, err := c2.StartDownload(ctx(t), req); err != nil || d.State == agentclient.StateFailed {
		t.Fatalf("re-sent request: %+v, %v", d, err)
	}
	d := waitFinished(t, c2, "w")
	assertPublished(t, d, dir, data, testenv.SHA256(data))
	if served := up.BytesServed("w.qcow2"); served > int64(len(data))+int64(len(data))/4 {
		t.Errorf("mirror served %d bytes for a %d-byte file: the job did not resume", served, len(data))
	}
	assertNoSecret(t, dir, logs.String())
}
