package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
)

// DefaultNodeHealthInterval is the interval when none is given.
const DefaultNodeHealthInterval = 5 * time.Second

// healthRoundsPerRun bounds the history of one run (a round is a handful
// of events): after that many rounds the workflow continues as new.
const healthRoundsPerRun = 200

// healthOptions: a round that fails (the database is down) is not
// retried: the next round is the retry.
var healthOptions = workflow.LocalActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
}

// NodeHealthWorkflow checks every node's agent every interval and records
// each node's status (online/offline, its pools and free space), which
// the API reads from the database. It runs forever, continuing as new
// every healthRoundsPerRun rounds; a signal checks at once.
func NodeHealthWorkflow(ctx workflow.Context, in NodeHealthInput) error {
	interval := in.Interval
	sig := workflow.GetSignalChannel(ctx, NodeHealthSignal)
	drain := func() {
		var req NodeHealthInput
		for sig.ReceiveAsync(&req) {
			if req.Interval > 0 {
				interval = req.Interval
			}
		}
	}
	drain() // the signal of the start that created this run asks for no extra round
	for round := 0; round < healthRoundsPerRun; round++ {
		if interval <= 0 {
			interval = DefaultNodeHealthInterval
		}
		var sum activities.NodeHealthSummary
		err := workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, healthOptions), a.CheckAllNodes).Get(ctx, &sum)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			workflow.GetLogger(ctx).Warn("node health round failed; trying again at the next one", "error", err)
		}
		tctx, cancelTimer := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(tctx, interval), func(workflow.Future) {})
		sel.AddReceive(sig, func(workflow.ReceiveChannel, bool) { drain() })
		sel.Select(ctx)
		cancelTimer()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	drain()
	return workflow.NewContinueAsNewError(ctx, NodeHealthWorkflowType, NodeHealthInput{Interval: interval})
}
