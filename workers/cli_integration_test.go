package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// RecordHistoryEnv, when set, makes the integration tests write the
// histories they record into workflows/testdata, where the replay test
// checks them against the workflow code.
const RecordHistoryEnv = "CLOUDIMAGES_RECORD_HISTORY"

func TestStartedFromTheTemporalCLIWithOnlyCatalogAndPool(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1", "node-2"}, size: 2 << 20, rate: 1 << 20})
	id := "cli-demo"
	wfID := workflows.WorkflowID(id)
	temporalCLI(t, srv, "workflow", "start", "--task-queue", workflows.TaskQueue, "--type", workflows.WorkflowType,
		"--workflow-id", wfID, "--input", `{"catalog_id": "tiny", "pool_id": "pool-1"}`)

	// While it runs, the progress query answers with the contract's shape.
	deadline := time.Now().Add(time.Minute)
	var live map[string]any
	for time.Now().Before(deadline) {
		out := temporalCLI(t, srv, "workflow", "query", "--workflow-id", wfID, "--type", workflows.ProgressQuery, "--output", "json")
		live = queryResult(t, out)
		if live["status"] == store.StatusReady || (live["status"] == store.StatusDownloading && progressOf(live)["bytes_done"].(float64) > 0) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, key := range []string{"status", "node_id", "progress", "failovers"} {
		if _, ok := live[key]; !ok {
			t.Fatalf("progress query result %v has no %q", live, key)
		}
	}
	if live["node_id"] == "" {
		t.Fatalf("progress query result %v names no node", live)
	}
	if live["status"] == store.StatusDownloading {
		meta := temporalCLI(t, srv, "workflow", "metadata", "--workflow-id", wfID)
		if !strings.Contains(meta, "on node `"+live["node_id"].(string)+"`") {
			t.Errorf("temporal workflow metadata does not show the download's node %v:\n%s", live["node_id"], meta)
		}
	}

	temporalCLI(t, srv, "workflow", "result", "--workflow-id", wfID)
	img, err := w.store.Image(context.Background(), id)
	if err != nil {
		t.Fatalf("the workflow did not create its image record: %v", err)
	}
	if img.Status != store.StatusReady || img.CatalogID != "tiny" || img.WorkflowID != wfID || img.FileName != "tiny.qcow2" {
		t.Fatalf("image = %+v", img)
	}
	done := queryResult(t, temporalCLI(t, srv, "workflow", "query", "--workflow-id", wfID, "--type", workflows.ProgressQuery, "--output", "json"))
	if done["status"] != store.StatusReady || progressOf(done)["percent"].(float64) != 100 {
		t.Fatalf("progress after READY = %v", done)
	}

	// Temporal Web (and `temporal workflow describe`) show the same status
	// and figures as the progress query.
	meta := temporalCLI(t, srv, "workflow", "metadata", "--workflow-id", wfID)
	for _, want := range []string{"**READY** on node `" + img.NodeID + "`", "100.0% — 2.0 MiB of 2.0 MiB"} {
		if !strings.Contains(meta, want) {
			t.Errorf("temporal workflow metadata does not show %q:\n%s", want, meta)
		}
	}

	// The search attributes find it by pool, by status and by node.
	for _, q := range []string{`PoolId="pool-1"`, `ImageStatus="READY"`, `ImageId="cli-demo"`, `CatalogId="tiny"`, `NodeId="` + img.NodeID + `"`} {
		waitListed(t, srv, q, wfID)
	}
	recordHistory(t, srv, wfID, "cli-started.json")
}

// TestStartedFromTheTemporalCLIWithCredentialsInTheURL: a workflow
// started from the temporal CLI, past the API, is judged by the same
// source policy: a URL with user:pass@ fails with invalid_request before
// anything is stored or downloaded, so the credentials never reach the
// image record.
func TestStartedFromTheTemporalCLIWithCredentialsInTheURL(t *testing.T) {
	srv := testenv.StartDevServer(t)
	w := newWorld(t, srv, worldOptions{dbURL: testenv.SQLite(t), nodes: []string{"node-1"}, size: 1 << 20})
	id := "cli-credentials"
	wfID := workflows.WorkflowID(id)
	const password = "s3cret-pass"
	u, err := url.Parse(w.up.FileURL(imageFile))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("user", password)
	input, _ := json.Marshal(map[string]string{"url": u.String(), "checksum": w.up.SHA256(imageFile), "pool_id": poolID})
	temporalCLI(t, srv, "workflow", "start", "--task-queue", workflows.TaskQueue, "--type", workflows.WorkflowType,
		"--workflow-id", wfID, "--input", string(input))

	out, err := runTemporalCLI(t, srv, "workflow", "result", "--workflow-id", wfID)
	if err == nil {
		t.Fatalf("the workflow succeeded; want it to fail with invalid_request:\n%s", out)
	}
	if !strings.Contains(out, "user or password") {
		t.Fatalf("temporal workflow result: %v; want a failure about the user or password:\n%s", err, out)
	}
	var appErr *temporal.ApplicationError
	if err := w.c.GetWorkflow(context.Background(), wfID, "").Get(context.Background(), nil); !errors.As(err, &appErr) || appErr.Type() != fault.InvalidRequest {
		t.Fatalf("workflow error = %v; want an application error of type %s", err, fault.InvalidRequest)
	}
	if strings.Contains(out, password) {
		t.Errorf("the failure shows the password:\n%s", out)
	}
	imgs, err := w.store.Images(context.Background(), store.ImageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if strings.Contains(img.SourceURL, password) || strings.Contains(img.ErrorMessage, password) {
			t.Fatalf("image %s stores the credentials: source_url %q, error %q", img.ID, img.SourceURL, img.ErrorMessage)
		}
	}
	if n := w.up.Requests(imageFile); n != 0 {
		t.Fatalf("the mirror was asked for the image %d times; want never", n)
	}
	recordHistory(t, srv, wfID, "cli-credentials-refused.json")
}

func waitListed(t *testing.T, srv *testenv.DevServer, query, wfID string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := temporalCLI(t, srv, "workflow", "list", "--query", query, "--output", "json")
		if strings.Contains(out, `"`+wfID+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporal workflow list --query '%s' does not list %s:\n%s", query, wfID, out)
		}
		time.Sleep(200 * time.Millisecond) // the visibility store catches up
	}
}

func temporalCLI(t *testing.T, srv *testenv.DevServer, args ...string) string {
	t.Helper()
	out, err := runTemporalCLI(t, srv, args...)
	if err != nil {
		t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runTemporalCLI runs the temporal CLI against the dev server and returns
// its output, and its error for a command expected to fail.
func runTemporalCLI(t *testing.T, srv *testenv.DevServer, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--address", srv.Address, "--namespace", "default")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.TemporalCLI(t), args...).CombinedOutput()
	return string(out), err
}

// queryResult reads `temporal workflow query --output json`.
func queryResult(t *testing.T, out string) map[string]any {
	t.Helper()
	var resp struct {
		QueryResult []map[string]any `json:"queryResult"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.QueryResult) != 1 {
		t.Fatalf("query output %q: %v", out, err)
	}
	return resp.QueryResult[0]
}

func progressOf(state map[string]any) map[string]any {
	p, _ := state["progress"].(map[string]any)
	if p == nil {
		return map[string]any{"bytes_done": 0.0, "percent": 0.0}
	}
	return p
}

// recordHistory fetches a finished workflow's history the way a user
// would (`temporal workflow show --output json`), replays it against the
// workflow code, and with RecordHistoryEnv set keeps it in
// workflows/testdata for the replay test.
func recordHistory(t *testing.T, srv *testenv.DevServer, wfID, name string) {
	t.Helper()
	out := temporalCLI(t, srv, "workflow", "show", "--workflow-id", wfID, "--output", "json")
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	r.RegisterWorkflowWithOptions(workflows.RemoveImageFileWorkflow, workflow.RegisterOptions{Name: workflows.RemoveFileWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.NodeHealthWorkflow, workflow.RegisterOptions{Name: workflows.NodeHealthWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.RefreshImageWorkflow, workflow.RegisterOptions{Name: workflows.RefreshWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.UploadImageWorkflow, workflow.RegisterOptions{Name: workflows.UploadWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.DistributeImageWorkflow, workflow.RegisterOptions{Name: workflows.DistributeWorkflowType})
	if err := r.ReplayWorkflowHistoryFromJSONFile(nil, path); err != nil {
		t.Fatalf("replay %s: %v", wfID, err)
	}
	if os.Getenv(RecordHistoryEnv) != "" {
		dst := filepath.Join(testenv.RepoRoot(t), "workflows", "testdata", name)
		if err := os.WriteFile(dst, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", dst)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
