package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

const e2eSecret = "e2e-s3cret-key"

// TestMirrorsAndCredentialsOnARealStack: a catalog entry whose url is gone
// and whose mirror wants a credential, downloaded through the REST API on
// separate processes. The image's progress shows, while it downloads and
// once READY, which mirror served how much; the secret is in no answer and
// no log.
func TestMirrorsAndCredentialsOnARealStack(t *testing.T) {
	up, mirror := testenv.NewUpstream(t), testenv.NewUpstream(t)
	f := addImage(mirror, "mirrored.qcow2", 3<<20)
	mirror.SetFault(f.name, testenv.Fault{RequireHeader: "X-Api-Key: " + e2eSecret, BytesPerSecond: 1 << 20})
	gone := up.FileURL("gone/mirrored.qcow2")
	dir := t.TempDir()
	entries := []map[string]any{{"id": "mirrored", "name": "Mirrored", "os": "test", "format": "qcow2",
		"url": gone, "mirrors": []string{f.url}, "checksum": f.sum, "size_bytes": len(f.data)}}
	catPath := filepath.Join(dir, "catalog.json")
	b, _ := json.Marshal(entries)
	if err := os.WriteFile(catPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(f.url)
	credPath := filepath.Join(dir, "credentials.json")
	creds := `{"vendor": {"host": "` + u.Host + `", "headers": {"X-Api-Key": "` + e2eSecret + `"}}}`
	if err := os.WriteFile(credPath, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 1,
		Env: []string{"CLOUDIMAGES_CATALOG=" + catPath, "CLOUDIMAGES_CREDENTIALS=" + credPath}})

	var entry struct {
		Items []struct {
			ID      string   `json:"id"`
			Mirrors []string `json:"mirrors"`
		} `json:"items"`
	}
	s.API.MustDo(t, http.MethodGet, "/v1/catalog", nil, &entry, http.StatusOK)
	if len(entry.Items) != 1 || len(entry.Items[0].Mirrors) != 1 || entry.Items[0].Mirrors[0] != f.url {
		t.Errorf("GET /v1/catalog: %+v; want the entry with its mirror", entry.Items)
	}

	var img api.Image
	s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"catalog_id": "mirrored", "pool_id": "local-1", "credential": "vendor"}, &img, http.StatusAccepted)
	if img.Credential != "vendor" {
		t.Errorf("image credential %q; want vendor", img.Credential)
	}
	live := waitImage(t, s, img.ID, time.Minute, "downloading from the mirror", func(i api.Image) bool {
		return len(i.Progress.Mirrors) == 2 && i.Progress.Mirrors[1].Bytes > 0 && i.Status == "DOWNLOADING"
	})
	if live.Progress.Mirrors[0].URL != gone || live.Progress.Mirrors[0].Bytes != 0 || live.Progress.Mirrors[1].URL != f.url {
		t.Errorf("live progress mirrors %+v; want %s with 0 bytes, then %s", live.Progress.Mirrors, gone, f.url)
	}
	done := waitStatus(t, s, img.ID, "READY", 2*time.Minute)
	checkReadyFile(t, done, f)
	if m := done.Progress.Mirrors; len(m) != 2 || m[0].Bytes != 0 || m[1].Bytes != int64(len(f.data)) {
		t.Errorf("READY progress mirrors %+v; want the mirror serving all %d bytes", m, len(f.data))
	}
	var all json.RawMessage
	s.API.MustDo(t, http.MethodGet, "/v1/images", nil, &all, http.StatusOK)
	if bytes.Contains(all, []byte(e2eSecret)) {
		t.Errorf("GET /v1/images shows the secret")
	}
	for _, p := range append(append([]*testenv.Process{}, s.Workers...), s.APIServer) {
		if b, _ := os.ReadFile(p.LogPath()); bytes.Contains(b, []byte(e2eSecret)) {
			t.Errorf("%s holds the secret", p.LogPath())
		}
	}

	// A name that cannot be a credential is refused at the edge.
	var bad struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	s.API.MustDo(t, http.MethodPost, "/v1/images", map[string]any{"catalog_id": "mirrored", "pool_id": "local-1", "credential": "no such/name"}, &bad, http.StatusBadRequest)
	if bad.Error.Code != "invalid_request" || !strings.Contains(bad.Error.Message, "credential") {
		t.Errorf("bad credential name: %+v; want invalid_request about the credential", bad.Error)
	}
}

// TestWorkerRefusesAReadableCredentialsFile: a credentials file others may
// read is refused at start, with what to do.
func TestWorkerRefusesAReadableCredentialsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.yaml")
	if err := os.WriteFile(path, []byte("vendor:\n  host: example.com\n  username: u\n  password: "+e2eSecret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Binary(t), "worker", "--credentials", path, "--database-url", testenv.SQLite(t), "--node-token", strings.Repeat("k", 32))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("worker started with a credentials file of mode 0644:\n%s", out)
	}
	if !strings.Contains(string(out), "chmod 600") || strings.Contains(string(out), e2eSecret) {
		t.Errorf("worker output %q: want it to say chmod 600, without the secret", out)
	}
}
