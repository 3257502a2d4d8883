package api_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

func TestSubscriptionBadInputIsRefusedWithTheContractsCodes(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	for _, tc := range []struct {
		what   string
		body   any
		status int
		code   string
	}{
		{"no catalog_id", map[string]any{"pool_ids": []string{pool}}, 400, "invalid_request"},
		{"unknown entry", map[string]any{"catalog_id": "nope", "pool_ids": []string{pool}}, 404, "catalog_entry_not_found"},
		{"no pools", map[string]any{"catalog_id": "cirros-0.6.3"}, 400, "invalid_request"},
		{"unknown pool", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{"nope"}}, 404, "pool_not_found"},
		{"a pool twice", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool, pool}}, 400, "invalid_request"},
		{"every too short", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "every": "1s"}, 400, "invalid_request"},
		{"every not a duration", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "every": "daily"}, 400, "invalid_request"},
		{"keep 0", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "keep": 0}, 400, "invalid_request"},
		{"keep too many", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "keep": 1000}, 400, "invalid_request"},
		{"unknown field", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "interval": "6h"}, 400, "invalid_request"},
	} {
		r := e.do("POST", "/v1/subscriptions", tc.body)
		if r.status != tc.status || r.errCode(t) != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.what, r.status, r.body, tc.status, tc.code)
		}
	}
	var subs struct{ Items []api.Subscription }
	e.must(200, "GET", "/v1/subscriptions", nil, &subs)
	if len(subs.Items) != 0 {
		t.Fatalf("refused requests left subscriptions: %+v", subs.Items)
	}
	for _, path := range []string{"/v1/subscriptions/nope", "/v1/subscriptions/nope/events"} {
		if r := e.do("GET", path, nil); r.status != 404 || r.errCode(t) != "not_found" {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	if r := e.do("POST", "/v1/subscriptions/nope/check", nil); r.status != 404 {
		t.Errorf("check of an unknown subscription: %d %s", r.status, r.body)
	}
}

// TestSubscriptionScheduleSkipsOverlapsCatchesUpOncePausesAndGoes runs
// against the real dev server with no worker: the first check starts and
// stays running, so a second one is refused with 409.
func TestSubscriptionScheduleSkipsOverlapsCatchesUpOncePausesAndGoes(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	var sub api.Subscription
	e.must(201, "POST", "/v1/subscriptions", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "every": "30m"}, &sub)
	if sub.Keep != 3 || sub.Every != "30m" || sub.Paused || sub.ScheduleID != "subscription-"+sub.ID {
		t.Fatalf("created: %+v, want keep 3 by default", sub)
	}
	ctx := context.Background()
	h := temporalC.ScheduleClient().GetHandle(ctx, contract.ScheduleID(sub.ID))
	t.Cleanup(func() { _ = h.Delete(context.Background()) })
	desc, err := h.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	act, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != contract.RefreshWorkflowType || act.TaskQueue != contract.TaskQueue {
		t.Fatalf("schedule action: %+v", desc.Schedule.Action)
	}
	if p := desc.Schedule.Policy; p.Overlap != enums.SCHEDULE_OVERLAP_POLICY_SKIP || p.CatchupWindow != 30*time.Minute {
		t.Fatalf("schedule policy: overlap %v, catch-up window %v; want skip and one interval", p.Overlap, p.CatchupWindow)
	}
	if iv := desc.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != 30*time.Minute {
		t.Fatalf("schedule spec: %+v", desc.Schedule.Spec)
	}

	// The first check runs at once; with no worker it keeps running.
	eventually(t, 30*time.Second, "the first check running", func() bool {
		var got api.Subscription
		e.must(200, "GET", "/v1/subscriptions/"+sub.ID, nil, &got)
		return got.Checking && got.NextCheckAt != nil
	})
	running, err := h.Describe(ctx)
	if err != nil || len(running.Info.RunningWorkflows) != 1 {
		t.Fatalf("running workflows: %+v %v", running.Info.RunningWorkflows, err)
	}
	t.Cleanup(func() {
		_ = temporalC.TerminateWorkflow(context.Background(), running.Info.RunningWorkflows[0].WorkflowID, "", "test over")
	})
	wf, err := temporalC.DescribeWorkflowExecution(ctx, running.Info.RunningWorkflows[0].WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	if sa := wf.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["SubscriptionId"]; sa == nil || !strings.Contains(string(sa.GetData()), sub.ID) {
		t.Errorf("the refresh run has no SubscriptionId search attribute: %v", wf.GetWorkflowExecutionInfo().GetSearchAttributes())
	}
	if r := e.do("POST", "/v1/subscriptions/"+sub.ID+"/check", nil); r.status != 409 || r.errCode(t) != "conflict" || !strings.Contains(string(r.body), "running") {
		t.Fatalf("check while one runs: %d %s, want 409 conflict", r.status, r.body)
	}

	// Paused: the schedule is paused, not deleted; a check is refused.
	var paused api.Subscription
	e.must(200, "PATCH", "/v1/subscriptions/"+sub.ID, map[string]any{"paused": true, "every": "2h", "keep": 5}, &paused)
	if !paused.Paused || paused.Every != "2h" || paused.Keep != 5 || paused.NextCheckAt != nil {
		t.Fatalf("paused: %+v", paused)
	}
	eventually(t, 10*time.Second, "the schedule paused, every 2h, catch-up 2h", func() bool {
		desc, err = h.Describe(ctx)
		return err == nil && desc.Schedule.State.Paused && desc.Schedule.Spec.Intervals[0].Every == 2*time.Hour &&
			desc.Schedule.Policy.CatchupWindow == 2*time.Hour
	})
	if r := e.do("POST", "/v1/subscriptions/"+sub.ID+"/check", nil); r.status != 409 || !strings.Contains(string(r.body), "paused") {
		t.Fatalf("check while paused: %d %s", r.status, r.body)
	}
	for _, body := range []any{map[string]any{}, map[string]any{"keep": 0}, map[string]any{"every": "1ms"}} {
		if r := e.do("PATCH", "/v1/subscriptions/"+sub.ID, body); r.status != 400 || r.errCode(t) != "invalid_request" {
			t.Errorf("PATCH %v: %d %s", body, r.status, r.body)
		}
	}
	e.must(200, "PATCH", "/v1/subscriptions/"+sub.ID, map[string]any{"paused": false}, nil)
	eventually(t, 10*time.Second, "the schedule resumed", func() bool {
		desc, err = h.Describe(ctx)
		return err == nil && !desc.Schedule.State.Paused
	})

	// A schedule deleted outside the API is a conflict to resolve, not
	// Temporal being down.
	if err := h.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "/v1/subscriptions/"+sub.ID+"/check", nil); r.status != 409 || !strings.Contains(string(r.body), "gone from Temporal") {
		t.Fatalf("check without a schedule: %d %s", r.status, r.body)
	}

	// DELETE removes the subscription (and the schedule, were it there).
	e.must(204, "DELETE", "/v1/subscriptions/"+sub.ID, nil, nil)
	var nf *serviceerror.NotFound
	eventually(t, 10*time.Second, "the schedule gone", func() bool {
		_, err := h.Describe(ctx)
		return errors.As(err, &nf)
	})
	if r := e.do("GET", "/v1/subscriptions/"+sub.ID, nil); r.status != 404 {
		t.Fatalf("GET after DELETE: %d", r.status)
	}
}

func TestSubscriptionWithTemporalDownIs503AndLeavesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down, err := client.NewLazyClient(client.Options{HostPort: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	e := newEnv(t, testenv.SQLite(t), withTemporal(down), withOptions(func(o *api.Options) { o.TemporalTimeout = time.Second }))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	r := e.do("POST", "/v1/subscriptions", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}})
	if r.status != 503 || r.errCode(t) != "temporal_unavailable" {
		t.Fatalf("POST with Temporal down: %d %s", r.status, r.body)
	}
	subs, err := e.store.Subscriptions(context.Background())
	if err != nil || len(subs) != 0 {
		t.Fatalf("a subscription without a schedule was kept: %+v %v", subs, err)
	}
}

// TestPinnedImageAndTheNewestBuildAnswersForItsEntry: POST /v1/images of a
// catalog entry answers with its newest build in the pool; a pinned image
// is not deleted until unpinned.
func TestPinnedImageAndTheNewestBuildAnswersForItsEntry(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, node := e.seed("nfs", "127.0.0.1:1")
		ctx := context.Background()
		build := &store.Image{ID: "b-" + randSuffix(), Name: "CirrOS", CatalogID: "cirros-0.6.3", SourceKey: "catalog:cirros-0.6.3@" + sha,
			PoolID: pool, FileName: "cirros-0.6.3-0123456789ab.img", Checksum: sha, Version: "0123456789ab"}
		if _, ok, err := e.store.CreateImage(ctx, build); err != nil || !ok {
			t.Fatal(err)
		}
		if err := e.store.Transition(ctx, build.ID, store.ToReady{NodeID: node, Path: "/x/" + build.FileName, Checksum: sha}); err != nil {
			t.Fatal(err)
		}
		var got api.Image
		e.must(200, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}, &got)
		if got.ID != build.ID || got.Version != "0123456789ab" {
			t.Fatalf("POST /v1/images answered %+v, want the build %s", got, build.ID)
		}
		for _, body := range []any{map[string]any{}, map[string]any{"pinned": "yes"}} {
			if r := e.do("PATCH", "/v1/images/"+build.ID, body); r.status != 400 {
				t.Errorf("PATCH %v: %d %s", body, r.status, r.body)
			}
		}
		e.must(200, "PATCH", "/v1/images/"+build.ID, map[string]any{"pinned": true}, &got)
		if !got.Pinned {
			t.Fatalf("PATCH pinned: %+v", got)
		}
		if r := e.do("DELETE", "/v1/images/"+build.ID, nil); r.status != 409 || !strings.Contains(string(r.body), "pinned") {
			t.Fatalf("DELETE of a pinned image: %d %s", r.status, r.body)
		}
		if r := e.do("PATCH", "/v1/images/nope", map[string]any{"pinned": true}); r.status != 404 {
			t.Errorf("PATCH of an unknown image: %d", r.status)
		}
	})
}
