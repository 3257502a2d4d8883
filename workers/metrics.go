package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Metrics are the worker's Prometheus metrics, counted by a worker
// interceptor around every activity and workflow, in a registry of its own
// (so that two workers in one test binary do not clash). The Temporal SDK's
// own metrics would need a tally or OpenTelemetry bridge this module does
// not carry; these answer the operator's questions: what runs, what fails
// and why, how long it takes.
type Metrics struct {
	registry  *prometheus.Registry
	started   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	running   *prometheus.GaugeVec
	workflows *prometheus.CounterVec
}

// NewMetrics returns the worker's metrics with nothing counted yet.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_worker_activities_started_total",
			Help: "Activity attempts this worker started, by activity type.",
		}, []string{"activity"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_worker_activities_finished_total",
			Help: "Activity attempts this worker finished, by activity type, outcome (completed, failed, cancelled) and error code (the workflow's error codes; \"\" when completed, \"other\" for an untyped error).",
		}, []string{"activity", "outcome", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cloudimages_worker_activity_duration_seconds",
			Help:    "How long activity attempts ran on this worker, by activity type (a download's watch runs as long as its transfer).",
			Buckets: []float64{0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600},
		}, []string{"activity"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudimages_worker_activities_running",
			Help: "Activity attempts running on this worker now, by activity type.",
		}, []string{"activity"}),
		workflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_worker_workflows_finished_total",
			Help: "Workflow runs that ended on this worker, by workflow type and outcome (completed, failed, cancelled, continued_as_new); a run replayed here after another worker ran it is counted once, where it ended.",
		}, []string{"workflow", "outcome"}),
	}
	m.registry.MustRegister(m.started, m.finished, m.duration, m.running, m.workflows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// ServeMetrics listens on addr and serves GET /metrics until ctx is done.
// The listener is opened before it returns, so a taken or bad address is
// an error at startup, not a silent lack of metrics.
func ServeMetrics(ctx context.Context, addr string, m *Metrics, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "address", addr, "error", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return nil
}

// Interceptor returns the worker interceptor that counts into m.
func (m *Metrics) Interceptor() interceptor.WorkerInterceptor { return &metricsInterceptor{m: m} }

type metricsInterceptor struct {
	interceptor.WorkerInterceptorBase
	m *Metrics
}

func (i *metricsInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &activityMetrics{m: i.m}
	a.Next = next
	return a
}

func (i *metricsInterceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	w := &workflowMetrics{m: i.m}
	w.Next = next
	return w
}

type activityMetrics struct {
	interceptor.ActivityInboundInterceptorBase
	m *Metrics
}

func (a *activityMetrics) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	name := activity.GetInfo(ctx).ActivityType.Name
	a.m.started.WithLabelValues(name).Inc()
	a.m.running.WithLabelValues(name).Inc()
	start := time.Now()
	res, err := a.Next.ExecuteActivity(ctx, in)
	a.m.running.WithLabelValues(name).Dec()
	a.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	outcome, code := activityOutcome(ctx, err)
	a.m.finished.WithLabelValues(name, outcome, code).Inc()
	return res, err
}

// activityOutcome classifies an attempt's end: cancelled when its context
// was (the workflow cancelled it, or its worker is stopping), else failed
// with the application error's type, which is one of the contract's error
// codes.
func activityOutcome(ctx context.Context, err error) (outcome, code string) {
	switch {
	case err == nil:
		return "completed", ""
	case ctx.Err() != nil || temporal.IsCanceledError(err) || errors.Is(err, context.Canceled):
		return "cancelled", ""
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() != "" {
		return "failed", app.Type()
	}
	return "failed", "other"
}

type workflowMetrics struct {
	interceptor.WorkflowInboundInterceptorBase
	m *Metrics
}

func (w *workflowMetrics) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	res, err := w.Next.ExecuteWorkflow(ctx, in)
	// A run's end is reached again each time its history is replayed (a
	// worker that lost its cache, a query): count the live end only. The
	// counter is no workflow command, so it leaves the history as it is.
	if !workflow.IsReplaying(ctx) {
		w.m.workflows.WithLabelValues(workflow.GetInfo(ctx).WorkflowType.Name, workflowOutcome(err)).Inc()
	}
	return res, err
}

func workflowOutcome(err error) string {
	var cont *workflow.ContinueAsNewError
	switch {
	case err == nil:
		return "completed"
	case errors.As(err, &cont):
		return "continued_as_new"
	case temporal.IsCanceledError(err):
		return "cancelled"
	}
	return "failed"
}
