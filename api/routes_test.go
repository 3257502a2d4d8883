package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

const sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestEveryRouteHappyPath(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)

		var settings map[string]any
		e.must(http.StatusOK, "GET", "/v1/settings", nil, &settings)
		if settings["temporal_namespace"] != "default" || settings["version"] != "test" {
			t.Errorf("settings: %v", settings)
		}
		var doc map[string]any
		e.must(http.StatusOK, "GET", "/v1/openapi.json", nil, &doc)
		if doc["openapi"] == nil {
			t.Errorf("openapi.json has no openapi field")
		}

		// Nodes.
		var n1, n2 map[string]any
		e.must(http.StatusCreated, "POST", "/v1/nodes", map[string]any{"id": "node-1", "name": "node 1", "address": "127.0.0.1:1"}, &n1)
		for _, k := range []string{"id", "name", "address", "status", "last_seen_at", "pools"} {
			if _, ok := n1[k]; !ok {
				t.Errorf("node has no %q: %v", k, n1)
			}
		}
		if n1["status"] != "unknown" || n1["last_seen_at"] != nil {
			t.Errorf("new node: %v, want status unknown and last_seen_at null", n1)
		}
		e.must(http.StatusCreated, "POST", "/v1/nodes", map[string]any{"address": "10.0.0.5:9090"}, &n2)
		if id, _ := n2["id"].(string); !strings.HasPrefix(id, "node-") {
			t.Errorf("generated node id %q", id)
		}
		var nodes struct{ Items []map[string]any }
		e.must(http.StatusOK, "GET", "/v1/nodes", nil, &nodes)
		if len(nodes.Items) != 2 {
			t.Errorf("GET /v1/nodes: %d items, want 2", len(nodes.Items))
		}
		e.must(http.StatusOK, "GET", "/v1/nodes/node-1", nil, nil)
		e.must(http.StatusNoContent, "DELETE", "/v1/nodes/"+n2["id"].(string), nil, nil)
		e.must(http.StatusNotFound, "GET", "/v1/nodes/"+n2["id"].(string), nil, nil)

		// Pools.
		var pool map[string]any
		poolID := "nfs-" + randSuffix()
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": poolID, "name": "NFS", "type": "nfs", "node_ids": []string{"node-1"}}, &pool)
		if pool["shared"] != true || pool["type"] != "nfs" || len(pool["node_ids"].([]any)) != 1 {
			t.Errorf("pool: %v, want an nfs pool, shared by default, with node-1", pool)
		}
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "local-x", "type": "local", "shared": false}, nil)
		var pools struct{ Items []map[string]any }
		e.must(http.StatusOK, "GET", "/v1/pools", nil, &pools)
		if len(pools.Items) != 2 {
			t.Errorf("GET /v1/pools: %d items", len(pools.Items))
		}
		e.must(http.StatusOK, "GET", "/v1/pools/"+poolID, nil, nil)
		e.must(http.StatusNoContent, "DELETE", "/v1/pools/local-x", nil, nil)

		// Catalog.
		var cat struct{ Items []map[string]any }
		e.must(http.StatusOK, "GET", "/v1/catalog", nil, &cat)
		if len(cat.Items) == 0 {
			t.Fatal("empty catalog")
		}
		for _, k := range []string{"id", "name", "os", "version", "arch", "format", "url", "checksum_url", "checksum", "size_bytes",
			"default_user", "cloud_init", "min_disk_bytes", "firmware"} {
			if _, ok := cat.Items[0][k]; !ok {
				t.Errorf("catalog item has no %q", k)
			}
		}
		e.must(http.StatusOK, "GET", "/v1/catalog/cirros-0.6.3", nil, nil)
		var freebsd, centos map[string]any
		for _, it := range cat.Items {
			switch it["id"] {
			case "freebsd-14.2":
				freebsd = it
			case "centos-stream-9":
				centos = it
			}
		}
		if freebsd["compression"] != "xz" || freebsd["default_user"] != "freebsd" || freebsd["cloud_init"] != true ||
			freebsd["firmware"] != "both" || freebsd["min_disk_bytes"].(float64) < 1<<30 {
			t.Errorf("GET /v1/catalog: freebsd-14.2 is %v, want compression xz and what a VM creator needs", freebsd)
		}
		if _, has := centos["compression"]; has || centos["default_user"] != "cloud-user" {
			t.Errorf("GET /v1/catalog: centos-stream-9 is %v, want no compression, default_user cloud-user", centos)
		}

		// Images: a catalog download starts a workflow.
		var img image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": poolID}, &img)
		if img.Status != store.StatusPending || img.WorkflowID != workflows.WorkflowID(img.ID) || img.CatalogID != "cirros-0.6.3" ||
			img.PoolID != poolID || img.FileName == "" || img.Error != nil {
			t.Errorf("new image: %+v", img)
		}
		checkWorkflowRunning(t, img.ID, poolID)
		var again image
		e.must(http.StatusOK, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": poolID}, &again)
		if again.ID != img.ID {
			t.Errorf("second POST: image %s, want the first one %s", again.ID, img.ID)
		}
		var byURL image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://example.com/images/x.qcow2", "name": "x", "checksum": strings.ToUpper(sha[:7]) + sha[7:], "pool_id": poolID, "node_id": "node-1"}, &byURL)
		if in := workflowInput(t, byURL.ID); in.URL != byURL.SourceURL || in.PreferredNodeID != "node-1" || in.Checksum != sha ||
			in.ImageID != byURL.ID || in.PoolID != poolID || in.Name != "x" {
			t.Errorf("workflow input: %+v", in)
		}
		if in := workflowInput(t, img.ID); in.CatalogID != "cirros-0.6.3" || in.URL != "" || in.ImageID != img.ID {
			t.Errorf("catalog workflow input: %+v", in)
		}
		if byURL.FileName != "x.qcow2" || byURL.Checksum != sha || byURL.SourceURL != "https://example.com/images/x.qcow2" {
			t.Errorf("url image: %+v", byURL)
		}
		var unverified image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://example.com/y.raw", "allow_unverified": true, "pool_id": poolID}, &unverified)
		if !unverified.Unverified || unverified.Name != "y.raw" {
			t.Errorf("unverified url image: %+v", unverified)
		}

		var got image
		e.must(http.StatusOK, "GET", "/v1/images/"+img.ID, nil, &got)
		if got.ID != img.ID || got.Status != store.StatusPending {
			t.Errorf("GET image: %+v", got)
		}
		var imgs struct{ Items []image }
		e.must(http.StatusOK, "GET", "/v1/images?pool_id="+poolID, nil, &imgs)
		if len(imgs.Items) != 3 {
			t.Errorf("images in pool: %d, want 3", len(imgs.Items))
		}
		e.must(http.StatusOK, "GET", "/v1/images?status=ready", nil, &imgs)
		if len(imgs.Items) != 0 {
			t.Errorf("READY images: %d, want 0", len(imgs.Items))
		}
		e.must(http.StatusOK, "GET", "/v1/images?status=PENDING&pool_id="+poolID, nil, &imgs)
		if len(imgs.Items) != 3 {
			t.Errorf("PENDING images: %d, want 3", len(imgs.Items))
		}

		// A pool with live images stays; a FAILED image's source can be
		// downloaded again, as a new image.
		if r := e.do("DELETE", "/v1/pools/"+poolID, nil); r.status != http.StatusConflict || r.errCode(t) != "conflict" {
			t.Errorf("DELETE pool with live images: %d %s", r.status, r.body)
		}
		if err := e.store.Transition(context.Background(), img.ID, store.ToFailed{Code: "upstream_error", Message: "mirror down"}); err != nil {
			t.Fatal(err)
		}
		e.must(http.StatusOK, "GET", "/v1/images/"+img.ID, nil, &got)
		if got.Error == nil || got.Error.Code != "upstream_error" {
			t.Errorf("FAILED image error: %+v", got.Error)
		}
		var fresh image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": poolID}, &fresh)
		if fresh.ID == img.ID {
			t.Errorf("POST after FAILED answered the failed image")
		}
		e.must(http.StatusNoContent, "DELETE", "/v1/images/"+img.ID, nil, nil)
		e.must(http.StatusNotFound, "GET", "/v1/images/"+img.ID, nil, nil)

		// Health and metrics are open.
		var hz map[string]any
		e.must(http.StatusOK, "GET", "/healthz", nil, &hz)
		if hz["status"] != "ok" {
			t.Errorf("healthz: %v", hz)
		}
		m := e.must(http.StatusOK, "GET", "/metrics", nil, nil)
		for _, want := range []string{`cloudimages_images{status="PENDING"} 3`, `cloudimages_api_requests_total{method="POST",route="/v1/images",status="202"}`,
			`cloudimages_api_image_requests_total{outcome="existing"} 1`, `cloudimages_nodes{status="unknown"} 1`} {
			if !strings.Contains(string(m.body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// The UI.
		ui := e.must(http.StatusOK, "GET", "/", nil, nil)
		if !strings.Contains(string(ui.body), "<html") && !strings.Contains(string(ui.body), "<!doctype") && !strings.Contains(string(ui.body), "<!DOCTYPE") {
			t.Errorf("GET / is not the UI: %.200s", ui.body)
		}
	})
}

// checkWorkflowRunning checks that the image's workflow runs, on the right
// task queue, with its search attributes.
func checkWorkflowRunning(t *testing.T, imageID, poolID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := temporalC.DescribeWorkflowExecution(ctx, workflows.WorkflowID(imageID), "")
	if err != nil {
		t.Fatalf("describe workflow of image %s: %v", imageID, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetType().GetName() != workflows.WorkflowType || info.GetTaskQueue() != workflows.TaskQueue {
		t.Errorf("workflow: status %s type %s queue %s", info.GetStatus(), info.GetType().GetName(), info.GetTaskQueue())
	}
	fields := info.GetSearchAttributes().GetIndexedFields()
	for _, k := range []string{"ImageId", "PoolId", "ImageStatus"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("workflow has no search attribute %s", k)
		}
	}
	_ = poolID
}

// workflowInput returns the input the image's workflow was started with.
func workflowInput(t *testing.T, imageID string) workflows.Input {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := temporalC.GetWorkflowHistory(ctx, workflows.WorkflowID(imageID), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	payloads := ev.GetWorkflowExecutionStartedEventAttributes().GetInput()
	var in workflows.Input
	if err := converter.GetDefaultDataConverter().FromPayloads(payloads, &in); err != nil {
		t.Fatal(err)
	}
	return in
}
