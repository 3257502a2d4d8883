package workers

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/workflows"
)

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
			StaticSummary: "checks every node agent's health"},
		workflows.NodeHealthWorkflowType, in)
	if err != nil {
		return fmt.Errorf("start the node health workflow %s: %w", workflows.NodeHealthWorkflowID, err)
	}
	return nil
}
