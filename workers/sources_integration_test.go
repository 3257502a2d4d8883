package workers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

const sourceSecret = "s3cret-api-key-never-stored"

// loadCredentials writes a credentials file for one host and loads it as
// the worker does.
func loadCredentials(t *testing.T, host string) *credentials.Set {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	body := "vendor:\n  host: " + host + "\n  headers:\n    X-Api-Key: " + sourceSecret + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := credentials.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// assertNoSecretUnder fails if a file under dir holds the secret.
func assertNoSecretUnder(t *testing.T, dir, what string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(sourceSecret)) {
			t.Errorf("%s: %s holds the secret", what, path)
		}
		return nil
	})
}

// TestCredentialAndMirrorsThroughTheWorkflow: a catalog entry whose first
// URL is gone and whose mirror wants a credential. The node tries the
// first, moves on to the mirror with the credential the workflow named
// (looked up by the worker), is restarted mid-download — it keeps no
// secret, so it waits until the watch sends the credential again — and
// resumes. The per-mirror bytes reach the image record and the progress
// query; the secret reaches neither the database, nor the workflow's
// history on the dev server, nor the agent's files and logs.
func TestCredentialAndMirrorsThroughTheWorkflow(t *testing.T) {
	srv := testenv.StartDevServer(t)
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			size := 3 << 20
			mirror := testenv.NewUpstream(t)
			var mirrorURL string
			w := newWorld(t, srv, worldOptions{dbURL: db.URL, nodes: []string{"node-1"}, size: size,
				entry: func(e *catalog.Entry) {
					e.URL = strings.Replace(e.URL, "/"+imageFile, "/gone/"+imageFile, 1) // 404 there
					mirrorURL = mirror.FileURL(imageFile)
					e.Mirrors = []string{mirrorURL}
				}})
			mirror.AddFile(imageFile, w.data)
			mirror.SetFault(imageFile, testenv.Fault{RequireHeader: "X-Api-Key: " + sourceSecret, BytesPerSecond: 1 << 20})
			u, _ := url.Parse(mirrorURL)
			w.creds = loadCredentials(t, u.Host)
			w.w.Stop()
			w.startWorker()

			id := "creds-" + db.Name
			run := w.startDownloadWith(id, "vendor")
			node, _ := w.waitTransferring(id, 1<<20)
			w.agents[node].Restart()
			res := w.result(run)
			img := w.checkReady(id, res)
			if served := mirror.BytesServed(imageFile); served > int64(size)+int64(size)/4 {
				t.Errorf("mirror served %d bytes for a %d-byte file: the restarted agent did not resume", served, size)
			}
			logs, _ := os.ReadFile(w.agents[node].LogPath())
			if !strings.Contains(string(logs), "waiting for the worker to send the download's credential again") {
				t.Errorf("the restarted agent never waited for the credential; its log:\n%s", logs)
			}

			// Which mirror served how much: in the record and the query.
			if len(img.MirrorBytes) != 2 || img.MirrorBytes[0].Bytes != 0 || img.MirrorBytes[1].URL != mirrorURL ||
				img.MirrorBytes[1].Bytes != int64(size) {
				t.Errorf("image mirror bytes %+v; want the gone URL 0 and %s all %d", img.MirrorBytes, mirrorURL, size)
			}
			if q := w.progress(workflows.WorkflowID(id)).Progress.Mirrors; len(q) != 2 || q[1].URL != mirrorURL || q[0].Bytes+q[1].Bytes != int64(size) {
				t.Errorf("progress query mirrors %+v; want both, adding up to %d", q, size)
			}
			if img.Credential != "vendor" {
				t.Errorf("image credential %q; want the name, vendor", img.Credential)
			}

			// The secret is nowhere it must not be.
			rec, _ := json.Marshal(img)
			if bytes.Contains(rec, []byte(sourceSecret)) {
				t.Errorf("the image record holds the secret")
			}
			if path, ok := strings.CutPrefix(db.URL, "sqlite:"); ok {
				assertNoSecretUnder(t, filepath.Dir(path), "database")
			}
			history := historyText(t, temporalCLI(t, srv, "workflow", "show", "--workflow-id", workflows.WorkflowID(id), "--output", "json"))
			if strings.Contains(history, sourceSecret) {
				t.Errorf("the workflow history holds the secret")
			}
			if !strings.Contains(history, `vendor`) {
				t.Errorf("the workflow history does not even name the credential: the check above proves nothing")
			}
			for _, a := range w.agents {
				for _, p := range a.Pools() {
					assertNoSecretUnder(t, p.Dir, "agent pool")
				}
				if b, _ := os.ReadFile(a.LogPath()); bytes.Contains(b, []byte(sourceSecret)) {
					t.Errorf("the agent's log holds the secret")
				}
			}
			// And no other mirror's host saw it.
			for _, h := range w.up.Headers() {
				if strings.Contains(h.Get("X-Api-Key"), sourceSecret) {
					t.Errorf("the first URL's host got the credential of another host")
				}
			}
		})
	}
}

// TestUnknownCredentialFailsTheWorkflow: a name the worker does not hold
// fails the download before anything is downloaded, with invalid_request
// and a message that says where credentials are defined.
func TestUnknownCredentialFailsTheWorkflow(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 1 << 20})
	id := "unknown-credential"
	err := w.startDownloadWith(id, "nobody").Get(context.Background(), nil)
	if err == nil {
		t.Fatal("the workflow succeeded with a credential the worker does not hold")
	}
	img := w.waitRecord(id, func(img store.Image) bool { return img.Terminal() })
	if img.Status != store.StatusFailed || img.ErrorCode != "invalid_request" || !strings.Contains(img.ErrorMessage, `"nobody"`) ||
		!strings.Contains(img.ErrorMessage, "--credentials") {
		t.Fatalf("image %s %s: %s; want FAILED invalid_request naming the credential and --credentials", img.Status, img.ErrorCode, img.ErrorMessage)
	}
	if n := w.up.Requests(imageFile); n != 0 {
		t.Errorf("the mirror was asked %d times; want nothing downloaded", n)
	}
	if _, err := w.agents["node-1"].Client().Download(context.Background(), id); err == nil {
		t.Errorf("a node-side job exists for a download that could not start")
	}
}

// historyText is a workflow history as the CLI prints it in JSON, with
// every payload (base64 in that JSON) decoded next to it, so a search
// sees the inputs, results, heartbeats and signals as they were sent.
func historyText(t *testing.T, out string) string {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("history is not JSON: %v", err)
	}
	var b strings.Builder
	b.WriteString(out)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if d, err := base64.StdEncoding.DecodeString(x); err == nil {
				b.WriteString("\n")
				b.Write(d)
			}
		}
	}
	walk(doc)
	return b.String()
}
