package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/tusclient"
	"github.com/quantix/cloudimages/workflows"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// uploadTTL is the stack's --upload-ttl: short, so that the expiry
// scenario takes seconds, and long enough for the others' pauses.
const uploadTTL = 20 * time.Second

func uploadStack(t *testing.T) *testenv.Stack {
	return testenv.StartStack(t, testenv.StackOptions{
		APIToken:   "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Env:        []string{"CLOUDIMAGES_UPLOAD_TTL=" + uploadTTL.String()},
		WorkerArgs: []string{"--node-grace", "2s", "--heartbeat-timeout", "6s", "--no-node-timeout", "10s"},
	})
}

// tus sends one request of the protocol with the stack's token.
func tus(t *testing.T, s *testenv.Stack, method, path string, headers map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.APIURL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+s.API.Token)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func meta(kv ...string) string {
	var pairs []string
	for i := 0; i < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(pairs, ",")
}

// create makes an upload by hand and returns its path (/v1/uploads/ID).
func create(t *testing.T, s *testenv.Stack, size int, metadata string) string {
	t.Helper()
	resp := tus(t, s, http.MethodPost, "/v1/uploads", map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": metadata}, nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Tus-Resumable") != "1.0.0" {
		t.Fatalf("POST /v1/uploads: %s (Tus-Resumable %q)", resp.Status, resp.Header.Get("Tus-Resumable"))
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/uploads/") {
		t.Fatalf("Location %q, want /v1/uploads/ID", loc)
	}
	return loc
}

func patch(t *testing.T, s *testenv.Stack, loc string, offset int, data []byte) *http.Response {
	t.Helper()
	return tus(t, s, http.MethodPatch, loc, map[string]string{"Content-Type": "application/offset+octet-stream", "Upload-Offset": strconv.Itoa(offset)}, data)
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkUploaded(t *testing.T, img api.Image, data []byte, verified bool) {
	t.Helper()
	sum := testenv.SHA256(data)
	if img.Status != "READY" || img.Source != "upload" || img.Checksum != sum || img.SizeBytes != int64(len(data)) {
		t.Fatalf("uploaded image: status %s source %q checksum %s size %d; want READY upload %s %d", img.Status, img.Source, img.Checksum, img.SizeBytes, sum, len(data))
	}
	if img.Unverified == verified {
		t.Errorf("image unverified=%v, want %v (a checksum was given: %v)", img.Unverified, !verified, verified)
	}
	if got := fileSHA256(t, img.Path); got != sum {
		t.Errorf("file %s has %s, want %s", img.Path, got, sum)
	}
}

func TestUploadsEndToEnd(t *testing.T) {
	s := uploadStack(t)
	client := func(t *testing.T) *tusclient.Client {
		return &tusclient.Client{BaseURL: s.APIURL(), Token: s.API.Token, StateDir: t.TempDir(), RetryDelay: 200 * time.Millisecond, Retries: 30}
	}

	t.Run("the Go client uploads, the image is READY with the given checksum", func(t *testing.T) {
		data := testenv.QCOW2Image(3<<20, 21)
		c := client(t)
		c.ChunkSize = 1 << 20
		var seen []tusclient.Progress
		res, err := c.Do(ctx(t), tusclient.Upload{Path: writeFile(t, data), PoolID: "local-1", Name: "go-client.qcow2", Checksum: testenv.SHA256(data)},
			func(p tusclient.Progress) { seen = append(seen, p) })
		if err != nil {
			t.Fatal(err)
		}
		checkUploaded(t, waitStatus(t, s, res.ImageID, "READY", time.Minute), data, true)
		recordHistory(t, s, "image-"+res.ImageID, "upload-ready.json")
		if n := metricValue(t, s.APIURL()+"/metrics", "cloudimages_api_upload_bytes_total"); n < float64(len(data)) {
			t.Errorf("cloudimages_api_upload_bytes_total = %v, want at least the %d bytes uploaded", n, len(data))
		}
		if len(seen) < 3 || seen[len(seen)-1].Done != int64(len(data)) {
			t.Errorf("progress %+v, want several reports ending at %d", seen, len(data))
		}
	})

	t.Run("without a checksum the computed one is recorded and the image says so", func(t *testing.T) {
		data := testenv.QCOW2Image(1<<20, 22)
		res, err := client(t).Do(ctx(t), tusclient.Upload{Path: writeFile(t, data), PoolID: "shared", Name: "no-sum.qcow2"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkUploaded(t, waitStatus(t, s, res.ImageID, "READY", time.Minute), data, false)
	})

	t.Run("an interrupted client resumes from the server's offset", func(t *testing.T) {
		data := testenv.QCOW2Image(4<<20, 23)
		file := writeFile(t, data)
		c := client(t)
		c.ChunkSize = 512 << 10
		cctx, stop := context.WithCancel(ctx(t))
		up := tusclient.Upload{Path: file, PoolID: "local-2", Name: "resumed.qcow2", Checksum: testenv.SHA256(data)}
		_, err := c.Do(cctx, up, func(p tusclient.Progress) {
			if p.Done >= 2<<20 {
				stop() // the client dies half way
			}
		})
		if err == nil {
			t.Fatal("the interrupted upload finished")
		}
		res, err := c.Do(ctx(t), up, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Resumed {
			t.Error("the second run made a new upload instead of resuming")
		}
		checkUploaded(t, waitStatus(t, s, res.ImageID, "READY", time.Minute), data, true)
	})

	t.Run("kill -9 of the agent mid-upload: the upload resumes from the agent's offset", func(t *testing.T) {
		data := testenv.QCOW2Image(4<<20, 24)
		c := client(t)
		c.ChunkSize = 256 << 10
		agent := s.Agent("node-1")
		pid := agent.Pid()
		var once sync.Once
		var killedAt int64
		res, err := c.Do(ctx(t), tusclient.Upload{Path: writeFile(t, data), PoolID: "local-1", Name: "agent-kill.qcow2", Checksum: testenv.SHA256(data)},
			func(p tusclient.Progress) {
				if p.Done >= 1<<20 {
					once.Do(func() {
						killedAt = p.Done
						agent.Kill()
						go agent.Restart()
					})
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		checkUploaded(t, waitStatus(t, s, res.ImageID, "READY", 90*time.Second), data, true)
		recordHistory(t, s, "image-"+res.ImageID, "upload-agent-killed.json")
		if killedAt == 0 || killedAt >= int64(len(data)) || agent.Pid() == pid {
			t.Fatalf("the agent was not killed mid-upload (at %d of %d bytes, pid %d then %d)", killedAt, len(data), pid, agent.Pid())
		}
		log, _ := os.ReadFile(agent.LogPath())
		if !bytes.Contains(log, []byte("upload waits for its bytes again after restart")) {
			t.Errorf("the restarted agent did not pick the upload up from its record:\n%s", log)
		}
	})

	t.Run("the real tus-js-client (Node) uploads, stops, and a second run resumes it", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			testenv.SkipUnlessCI(t, "no node on the PATH: install Node.js (make test-deps does) to run tus-js-client against the API")
		}
		data := testenv.QCOW2Image(3<<20, 29)
		file, state := writeFile(t, data), filepath.Join(t.TempDir(), "tus-urls.json")
		run := func(stopAfter int) (out struct {
			URL     string `json:"url"`
			Resumed bool   `json:"resumed"`
			Stopped bool   `json:"stopped"`
		}) {
			t.Helper()
			cmd := exec.CommandContext(ctx(t), node, filepath.Join("testdata", "tus-upload.js"), s.APIURL(), s.API.Token, file,
				"local-2", "tusjs.qcow2", testenv.SHA256(data), state, strconv.Itoa(stopAfter))
			b, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("node tus-upload.js: %v\n%s%s", err, b, stderr)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil {
				t.Fatalf("tus-upload.js printed %s: %v", b, err)
			}
			return out
		}
		first := run(1 << 20)
		if !first.Stopped || first.URL == "" {
			t.Fatalf("first run: %+v, want it stopped after 1 MiB with an upload URL", first)
		}
		id := first.URL[strings.LastIndex(first.URL, "/")+1:]
		resp := tus(t, s, http.MethodHead, "/v1/uploads/"+id, nil, nil)
		if off, _ := strconv.Atoi(resp.Header.Get("Upload-Offset")); off < 1<<20 || off >= len(data) {
			t.Fatalf("after the first run the server has %d bytes, want at least 1 MiB and not all", off)
		}
		second := run(0)
		if !second.Resumed || second.URL != first.URL {
			t.Fatalf("second run: %+v, want it to resume %s", second, first.URL)
		}
		checkUploaded(t, waitStatus(t, s, id, "READY", time.Minute), data, true)
	})

	t.Run("kill -9 of the API mid-upload: the client resumes once it is back", func(t *testing.T) {
		data := testenv.QCOW2Image(4<<20, 30)
		c := client(t)
		c.ChunkSize = 256 << 10
		pid := s.APIServer.Pid()
		var once sync.Once
		var killedAt int64
		res, err := c.Do(ctx(t), tusclient.Upload{Path: writeFile(t, data), PoolID: "local-2", Name: "api-kill.qcow2", Checksum: testenv.SHA256(data)},
			func(p tusclient.Progress) {
				if p.Done >= 1<<20 {
					once.Do(func() {
						killedAt = p.Done
						s.APIServer.Kill()
						go s.APIServer.Start()
					})
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		if killedAt == 0 || killedAt >= int64(len(data)) || s.APIServer.Pid() == pid {
			t.Fatalf("the API was not killed mid-upload (at %d of %d bytes, pid %d then %d)", killedAt, len(data), pid, s.APIServer.Pid())
		}
		if res.Resumed {
			t.Error("Resumed says the upload was found from an earlier run; it is this run's")
		}
		checkUploaded(t, waitStatus(t, s, res.ImageID, "READY", 90*time.Second), data, true)
	})

	t.Run("the protocol's answers: options, offsets, versions, auth", func(t *testing.T) {
		resp := tus(t, s, http.MethodOptions, "/v1/uploads", map[string]string{"Tus-Resumable": ""}, nil)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Tus-Version") != "1.0.0" ||
			!strings.Contains(resp.Header.Get("Tus-Extension"), "creation") || resp.Header.Get("Tus-Max-Size") == "" {
			t.Errorf("OPTIONS: %s %v", resp.Status, resp.Header)
		}
		if resp := tus(t, s, http.MethodPost, "/v1/uploads", map[string]string{"Tus-Resumable": "0.2.2", "Upload-Length": "10"}, nil); resp.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("another protocol version: %s, want 412", resp.Status)
		}
		if resp := tus(t, s, http.MethodPost, "/v1/uploads", map[string]string{"Authorization": "", "Upload-Length": "10"}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: %s, want 401", resp.Status)
		}
		if resp := tus(t, s, http.MethodPost, "/v1/uploads", map[string]string{"Upload-Length": "10", "Upload-Metadata": meta("name", "x.qcow2")}, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("no pool_id: %s, want 400", resp.Status)
		}
		if resp := tus(t, s, http.MethodPost, "/v1/uploads", map[string]string{"Upload-Length": strconv.FormatInt(1<<40, 10), "Upload-Metadata": meta("name", "x.qcow2", "pool_id", "local-1")}, nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("past Tus-Max-Size: %s, want 413", resp.Status)
		}
		data := testenv.QCOW2Image(1<<20, 25)
		loc := create(t, s, len(data), meta("name", "offsets.qcow2", "pool_id", "local-2"))
		if resp := patch(t, s, loc, 0, data[:4096]); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != "4096" {
			t.Fatalf("first PATCH: %s offset %q", resp.Status, resp.Header.Get("Upload-Offset"))
		}
		if resp := patch(t, s, loc, 100, data[100:200]); resp.StatusCode != http.StatusConflict {
			t.Errorf("PATCH at the wrong offset: %s, want 409", resp.Status)
		}
		if resp := tus(t, s, http.MethodPatch, loc, map[string]string{"Content-Type": "text/plain", "Upload-Offset": "4096"}, data[4096:5000]); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("PATCH as text/plain: %s, want 415", resp.Status)
		}
		resp = tus(t, s, http.MethodHead, loc, nil, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "4096" || resp.Header.Get("Upload-Length") != strconv.Itoa(len(data)) {
			t.Errorf("HEAD: %s offset %q length %q, want 4096 of %d", resp.Status, resp.Header.Get("Upload-Offset"), resp.Header.Get("Upload-Length"), len(data))
		}
		if resp := patch(t, s, loc, 4096, data[4096:]); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("last PATCH: %s", resp.Status)
		}
		checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, false)
	})

	t.Run("faults end the image FAILED with their code and leave no file", func(t *testing.T) {
		image := testenv.QCOW2Image(1<<20, 26)
		page := []byte("<!DOCTYPE html><html><body>" + strings.Repeat("sorry ", 200) + "</body></html>")
		tests := []struct {
			name     string
			declared int
			sent     []byte
			sum      string
			status   int // of the PATCH
			code     string
		}{
			{"wrong checksum", len(image), image, testenv.SHA256([]byte("other")), http.StatusNoContent, "checksum_mismatch"},
			{"larger than declared", 1000, image[:5000], "", http.StatusUnprocessableEntity, "too_large"},
			{"not a disk image", len(page), page, "", http.StatusUnprocessableEntity, "not_a_disk_image"},
		}
		for i, tc := range tests {
			name := "fault-" + strconv.Itoa(i) + ".img"
			kv := []string{"name", name, "pool_id", "local-1"}
			if tc.sum != "" {
				kv = append(kv, "checksum", tc.sum)
			}
			loc := create(t, s, tc.declared, meta(kv...))
			if resp := patch(t, s, loc, 0, tc.sent); resp.StatusCode != tc.status {
				t.Errorf("%s: PATCH %s, want %d", tc.name, resp.Status, tc.status)
			}
			img := waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "FAILED", time.Minute)
			wantError(t, img, tc.code)
			checkNoData(t, s, "local-1", name)
			if resp := tus(t, s, http.MethodHead, loc, nil, nil); resp.StatusCode != http.StatusGone {
				t.Errorf("%s: HEAD of the failed upload %s, want 410", tc.name, resp.Status)
			}
		}
	})

	t.Run("termination cancels the upload and removes its partial data", func(t *testing.T) {
		loc := create(t, s, 1<<20, meta("name", "terminated.qcow2", "pool_id", "local-2"))
		if resp := patch(t, s, loc, 0, testenv.QCOW2Image(1<<20, 27)[:8192]); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PATCH: %s", resp.Status)
		}
		if resp := tus(t, s, http.MethodDelete, loc, nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %s", resp.Status)
		}
		waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "CANCELLED", time.Minute)
		eventually(t, 30*time.Second, "partial data removed", func() bool { return len(partials(t, s.PoolDir("local-2", "node-2"))) == 0 })
	})

	t.Run("an abandoned upload expires and its partial data is removed", func(t *testing.T) {
		loc := create(t, s, 1<<20, meta("name", "abandoned.qcow2", "pool_id", "local-2"))
		if resp := patch(t, s, loc, 0, testenv.QCOW2Image(1<<20, 28)[:8192]); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PATCH: %s", resp.Status)
		}
		if n := len(partials(t, s.PoolDir("local-2", "node-2"))); n != 1 {
			t.Fatalf("%d partial files while the upload waits, want 1", n)
		}
		img := waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "FAILED", uploadTTL+time.Minute)
		wantError(t, img, "upload_expired")
		recordHistory(t, s, "image-"+img.ID, "upload-expired.json")
		eventually(t, 30*time.Second, "partial data removed", func() bool { return len(partials(t, s.PoolDir("local-2", "node-2"))) == 0 })
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// recordHistory replays the history of workflow workflowID (an image's,
// an upload's or a distribution's) against the current code and, with
// CLOUDIMAGES_RECORD_HISTORY set, keeps it in workflows/testdata as name
// for the replay test.
func recordHistory(t *testing.T, s *testenv.Stack, workflowID, name string) {
	t.Helper()
	out, err := s.TemporalCLI("workflow", "show", "--workflow-id", workflowID, "--output", "json")
	if err != nil {
		t.Fatalf("temporal workflow show: %v\n%s", err, out)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	r.RegisterWorkflowWithOptions(workflows.UploadImageWorkflow, workflow.RegisterOptions{Name: workflows.UploadWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.DistributeImageWorkflow, workflow.RegisterOptions{Name: workflows.DistributeWorkflowType})
	if err := r.ReplayWorkflowHistoryFromJSONFile(nil, path); err != nil {
		t.Fatalf("replay %s: %v", name, err)
	}
	if os.Getenv("CLOUDIMAGES_RECORD_HISTORY") != "" {
		dst := filepath.Join(testenv.RepoRoot(t), "workflows", "testdata", name)
		if err := os.WriteFile(dst, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", dst)
	}
}

// metricValue reads one unlabelled metric from a Prometheus endpoint.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("%s has no %s", url, name)
	return 0
}
