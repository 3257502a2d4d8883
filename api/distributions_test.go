package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

const sum64 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDistributionBadInputIsRefusedWithTheContractsCodes(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	pool, _ := e.seed("local", "127.0.0.1:1")
	url := "https://mirror.example/x.qcow2"
	for _, tc := range []struct {
		what   string
		body   any
		status int
		code   string
	}{
		{"no source", map[string]any{"pool_ids": []string{pool}}, 400, "invalid_request"},
		{"catalog and url", map[string]any{"catalog_id": "cirros-0.6.3", "url": url, "checksum": sum64, "pool_ids": []string{pool}}, 400, "invalid_request"},
		{"url without checksum", map[string]any{"url": url, "name": "x", "pool_ids": []string{pool}}, 400, "invalid_request"},
		{"bad checksum", map[string]any{"url": url, "name": "x", "checksum": "md5:00", "pool_ids": []string{pool}}, 400, "invalid_request"},
		{"unknown entry", map[string]any{"catalog_id": "nope", "pool_ids": []string{pool}}, 404, "catalog_entry_not_found"},
		{"no pools", map[string]any{"catalog_id": "cirros-0.6.3"}, 400, "invalid_request"},
		{"pools and all_pools", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "all_pools": true}, 400, "invalid_request"},
		{"unknown pool", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool, "nope"}}, 404, "pool_not_found"},
		{"a pool twice", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool, pool}}, 400, "invalid_request"},
		{"bad pool id", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{"../x"}}, 400, "invalid_request"},
		{"max_parallel 0", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "max_parallel": 0}, 400, "invalid_request"},
		{"max_parallel too many", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "max_parallel": 1000}, 400, "invalid_request"},
		{"unknown field", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{pool}, "pools": []string{pool}}, 400, "invalid_request"},
	} {
		r := e.do("POST", "/v1/distributions", tc.body)
		if r.status != tc.status || r.errCode(t) != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.what, r.status, r.body, tc.status, tc.code)
		}
	}
	var list struct{ Items []api.Distribution }
	e.must(200, "GET", "/v1/distributions", nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("refused requests left distributions: %+v", list.Items)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if r := e.do(m, "/v1/distributions/nope", nil); r.status != 404 || r.errCode(t) != "not_found" {
			t.Errorf("%s of an unknown distribution: %d %s", m, r.status, r.body)
		}
	}
}

func TestDistributionAllPoolsNeedsAPool(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	r := e.do("POST", "/v1/distributions", map[string]any{"catalog_id": "cirros-0.6.3", "all_pools": true})
	if r.status != 422 || r.errCode(t) != "unprocessable" {
		t.Fatalf("all_pools with no pools: %d %s, want 422", r.status, r.body)
	}
}

// TestDistributionIsIdempotentBySourceAndPoolSet runs against the real dev
// server with no worker: the workflow starts and stays running.
func TestDistributionIsIdempotentBySourceAndPoolSet(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		p1, _ := e.seed("local", "127.0.0.1:1")
		p2, _ := e.seed("local", "127.0.0.1:1")
		body := map[string]any{"url": "https://mirror.example/x.qcow2", "name": "x", "checksum": sum64, "pool_ids": []string{p1, p2}}
		var d api.Distribution
		e.must(202, "POST", "/v1/distributions", body, &d)
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
		if d.Status != "RUNNING" || d.MaxParallel != 4 || d.WorkflowID != "distribution-"+d.ID || d.Source.URL == "" || d.Source.Checksum != sum64 {
			t.Fatalf("created %+v, want RUNNING, max_parallel 4, the request's source", d)
		}
		desc, err := temporalC.DescribeWorkflowExecution(context.Background(), d.WorkflowID, "")
		if err != nil {
			t.Fatal(err)
		}
		if typ := desc.GetWorkflowExecutionInfo().GetType().GetName(); typ != contract.DistributeWorkflowType {
			t.Fatalf("workflow type %s", typ)
		}
		if _, ok := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["DistributionId"]; !ok {
			t.Fatalf("the workflow has no DistributionId search attribute: %v", desc.GetWorkflowExecutionInfo().GetSearchAttributes())
		}

		// The same pools in another order, many at once: the same one.
		var wg sync.WaitGroup
		ids := make(chan string, 10)
		reordered := map[string]any{"url": "https://mirror.example/x.qcow2", "name": "x", "checksum": sum64, "pool_ids": []string{p2, p1}}
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", "/v1/distributions", reordered)
				var got api.Distribution
				r.json(t, &got)
				if r.status != 200 {
					t.Errorf("again: %d %s, want 200", r.status, r.body)
				}
				ids <- got.ID
			}()
		}
		wg.Wait()
		close(ids)
		for id := range ids {
			if id != d.ID {
				t.Fatalf("posted again, answered %q, want %q", id, d.ID)
			}
		}
		// Another pool set is another distribution.
		var other api.Distribution
		e.must(202, "POST", "/v1/distributions", map[string]any{"url": "https://mirror.example/x.qcow2", "name": "x", "checksum": sum64, "pool_ids": []string{p1}}, &other)
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), other.WorkflowID, "", "test over") })
		if other.ID == d.ID {
			t.Fatal("a distribution into another pool set answered with the first")
		}
		var list struct{ Items []api.Distribution }
		e.must(200, "GET", "/v1/distributions", nil, &list)
		if len(list.Items) != 2 {
			t.Fatalf("listed %d distributions, want 2", len(list.Items))
		}
		var got api.Distribution
		e.must(200, "GET", "/v1/distributions/"+d.ID, nil, &got)
		if got.ID != d.ID || len(got.PoolIDs) != 2 {
			t.Fatalf("GET: %+v", got)
		}
	})
}

// TestDistributionPostedAgainWhenPartialRetriesInTheSameDistribution: the
// PARTIAL one is RUNNING again, under a new run of the same workflow id.
func TestDistributionPostedAgainWhenPartialRetriesInTheSameDistribution(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		p1, _ := e.seed("local", "127.0.0.1:1")
		body := map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{p1}, "max_parallel": 2}
		var d api.Distribution
		e.must(202, "POST", "/v1/distributions", body, &d)
		ctx := context.Background()
		first, err := temporalC.DescribeWorkflowExecution(ctx, d.WorkflowID, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
		prev := first.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		// First as if the run had recorded PARTIAL and not closed yet (its
		// last step), then as if it had closed.
		for _, closed := range []bool{false, true} {
			if closed {
				if err := temporalC.TerminateWorkflow(ctx, d.WorkflowID, "", "ended"); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.store.EndDistribution(ctx, d.ID, store.DistributionPartial, "the copy into "+p1+" failed"); err != nil {
				t.Fatal(err)
			}
			var again api.Distribution
			e.must(200, "POST", "/v1/distributions", body, &again)
			if again.ID != d.ID || again.Status != "RUNNING" || again.Message != "" {
				t.Fatalf("posted again (run closed: %v): %+v, want the same distribution RUNNING", closed, again)
			}
			now, err := temporalC.DescribeWorkflowExecution(ctx, d.WorkflowID, "")
			if err != nil {
				t.Fatal(err)
			}
			info := now.GetWorkflowExecutionInfo()
			if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetExecution().GetRunId() == prev {
				t.Fatalf("run closed %v: workflow %s run %s, want a new running run", closed, info.GetStatus(), info.GetExecution().GetRunId())
			}
			old, err := temporalC.DescribeWorkflowExecution(ctx, d.WorkflowID, prev)
			if err != nil {
				t.Fatal(err)
			}
			if st := old.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_TERMINATED {
				t.Fatalf("the run before the retry is %s, want it replaced (terminated)", st)
			}
			prev = info.GetExecution().GetRunId()
		}
	})
}

func TestDistributionDeleteCancelsARunningOneAndForgetsAnEndedOne(t *testing.T) {
	e := newEnv(t, testenv.SQLite(t))
	p1, _ := e.seed("local", "127.0.0.1:1")
	var d api.Distribution
	e.must(202, "POST", "/v1/distributions", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{p1}}, &d)
	ctx := context.Background()
	t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
	e.must(202, "DELETE", "/v1/distributions/"+d.ID, nil, nil)
	iter := temporalC.GetWorkflowHistory(ctx, d.WorkflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	requested := false
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		requested = requested || ev.GetEventType() == enums.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
	}
	if !requested {
		t.Fatal("DELETE did not ask the workflow to cancel")
	}
	// Ended (as the workflow records it), it is forgotten; its images stay.
	if err := e.store.EndDistribution(ctx, d.ID, store.DistributionCancelled, "cancelled"); err != nil {
		t.Fatal(err)
	}
	e.must(204, "DELETE", "/v1/distributions/"+d.ID, nil, nil)
	if r := e.do("GET", "/v1/distributions/"+d.ID, nil); r.status != 404 {
		t.Fatalf("GET after DELETE: %d %s", r.status, r.body)
	}
}

// TestDistributionWithTemporalDownIsRefusedAndLeavesNothingRunning: 503,
// and the same request later starts a new distribution.
func TestDistributionWithTemporalDownIsRefusedAndLeavesNothingRunning(t *testing.T) {
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
	dbURL := testenv.SQLite(t)
	e := newEnv(t, dbURL, withTemporal(down), withOptions(func(o *api.Options) {
		o.TemporalTimeout = time.Second
		o.TemporalAddress = addr
	}))
	p1, _ := e.seed("local", "127.0.0.1:1")
	body := map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": []string{p1}}
	if r := e.do("POST", "/v1/distributions", body); r.status != http.StatusServiceUnavailable || r.errCode(t) != "temporal_unavailable" {
		t.Fatalf("POST with Temporal down: %d %s", r.status, r.body)
	}
	ds, err := e.store.Distributions(context.Background())
	if err != nil || len(ds) != 1 || ds[0].Status != store.DistributionCancelled {
		t.Fatalf("after a failed start: %+v (%v), want the one CANCELLED", ds, err)
	}
	up := newEnv(t, dbURL)
	var d api.Distribution
	up.must(202, "POST", "/v1/distributions", body, &d)
	t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
	if d.ID == ds[0].ID {
		t.Fatal("the same request later answered with the distribution that never started")
	}
}

// TestDistributionOfManyPoolsIsIdempotentToo: 150 pools make a pool key
// too long to index as it is; the same set in another order is still the
// same distribution (PostgreSQL refuses index entries past ~2.7 kB).
func TestDistributionOfManyPoolsIsIdempotentToo(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		_, node := e.seed("local", "127.0.0.1:1")
		var pools []string
		for i := range 150 {
			id := fmt.Sprintf("many-%s-%03d", randSuffix(), i)
			e.must(201, "POST", "/v1/pools", map[string]any{"id": id, "type": "local", "node_ids": []string{node}}, nil)
			pools = append(pools, id)
		}
		var d api.Distribution
		e.must(202, "POST", "/v1/distributions", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": pools}, &d)
		t.Cleanup(func() { _ = temporalC.TerminateWorkflow(context.Background(), d.WorkflowID, "", "test over") })
		reversed := slices.Clone(pools)
		slices.Reverse(reversed)
		var again api.Distribution
		e.must(200, "POST", "/v1/distributions", map[string]any{"catalog_id": "cirros-0.6.3", "pool_ids": reversed}, &again)
		if again.ID != d.ID || len(again.PoolIDs) != 150 {
			t.Fatalf("posted again in another order: %s with %d pools, want %s with 150", again.ID, len(again.PoolIDs), d.ID)
		}
	})
}
