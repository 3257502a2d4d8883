package workers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/workflows"
)

const nodeHealthSummary = "checks every node agent's health"

// StartNodeHealth makes sure NodeHealthWorkflow runs, with this worker's
// interval. Every worker calls it when it starts: the first one starts the
// workflow; the others find it running under its one id and only signal
// it, so the nodes are checked once per cluster, not once per worker, and
// the interval is that of the worker started last. (A Temporal Schedule
// would start a new workflow every few seconds, each one a row in the
// workflow list, and its interval cannot go below a second for tests.)
func StartNodeHealth(ctx context.Context, c client.Client, interval time.Duration) error {
	in := workflows.NodeHealthInput{Interval: interval}
	_, err := c.SignalWithStartWorkflow(ctx, workflows.NodeHealthWorkflowID, workflows.NodeHealthSignal, in,
		client.StartWorkflowOptions{ID: workflows.NodeHealthWorkflowID, TaskQueue: workflows.TaskQueue,
			StaticSummary: nodeHealthSummary},
		workflows.NodeHealthWorkflowType, in)
	if err != nil {
		return fmt.Errorf("start the node health workflow %s: %w", workflows.NodeHealthWorkflowID, err)
	}
	return nil
}

// keepNodeHealth makes sure, every `every` until ctx is done, that
// NodeHealthWorkflow still runs, and starts it again when it does not (an
// operator terminated it, say): without it no node status changes. A
// start that finds it running is a no-op (USE_EXISTING), not a signal, so
// it costs the workflow no extra round.
func keepNodeHealth(ctx context.Context, c client.Client, interval, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in := workflows.NodeHealthInput{Interval: interval}
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.NodeHealthWorkflowID, TaskQueue: workflows.TaskQueue,
			WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, StaticSummary: nodeHealthSummary},
			workflows.NodeHealthWorkflowType, in)
		if err != nil && ctx.Err() == nil {
			log.Warn("make sure the node health workflow runs; trying again later", "error", err)
		}
	}
}
