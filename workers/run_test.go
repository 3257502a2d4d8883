package workers_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workers"
	"github.com/quantix/cloudimages/workflows"
)

func TestRunSaysWhatToDoWhenTemporalIsNotThere(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	start := time.Now()
	err := workers.Run(context.Background(), workers.Config{TemporalAddress: addr, TemporalNamespace: "default",
		DatabaseURL: testenv.SQLite(t), DialTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("Run succeeded without Temporal")
	}
	for _, want := range []string{addr, "does not answer", "--temporal-address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("gave up after %s, want about the 2s dial timeout", took)
	}
}

func TestRunRegistersMissingSearchAttributesAndStopsCleanly(t *testing.T) {
	// A dev server started without the search attributes, unlike testenv's.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{ExistingPath: testenv.TemporalCLI(t),
		ClientOptions: &client.Options{Namespace: "default"}, LogLevel: "error", Stdout: os.Stderr, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- workers.Run(runCtx, workers.Config{TemporalAddress: srv.FrontendHostPort(), TemporalNamespace: "default",
			DatabaseURL: testenv.SQLite(t)})
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := srv.Client().OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, name := range workflows.SearchAttributeNames {
			if _, ok := resp.GetCustomAttributes()[name]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended before registering the search attributes: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d search attributes still missing", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The worker polls the task queue.
	for {
		resp, err := srv.Client().DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_WORKFLOW)
		if err == nil && len(resp.GetPollers()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker polls %s: %v", workflows.TaskQueue, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop within 30s of its context ending")
	}
}

// TestRunRefusesATakenMetricsAddress: a worker asked to serve /metrics
// where it cannot says so and does not start, rather than running without
// the metrics its operator relies on.
func TestRunRefusesATakenMetricsAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = workers.Run(context.Background(), workers.Config{TemporalAddress: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		TemporalNamespace: "default", DatabaseURL: testenv.SQLite(t), DialTimeout: time.Second, MetricsListen: taken.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "--metrics-listen "+taken.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run with a taken --metrics-listen: %v, want an error naming the flag and the taken address", err)
	}
}
