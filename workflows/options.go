package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Activity options, one set per kind of step. Every retry policy is
// bounded: a step that keeps failing ends the download with its error
// (or, for the node steps, moves it to another node).
//
// The short steps — database, catalog, checksum file, node health checks —
// run as local activities: in the worker that runs the workflow task, with
// no round trip through the server for each. That took the time from
// POST /v1/images to the node's start request from ~0.5 s to ~0.15 s
// (BENCHMARKS.md). The node steps stay ordinary activities: they are long,
// heartbeat, and must be able to move to another worker.
var (
	// Database and catalog steps: quick, retried a few times.
	localOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: 10 * time.Second, MaximumAttempts: 8},
	}
	// Fetching a vendor's checksum file.
	checksumOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2,
			MaximumInterval: 20 * time.Second, MaximumAttempts: 5},
	}
	// Health checks of the pool's nodes; the workflow itself waits and
	// asks again when none is usable.
	pickOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	}
	// Connecting to the node to start its job: a few quick tries, then
	// the next node. (See nodeStepOptions for cancellation.)
	startOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: 4 * time.Second, MaximumAttempts: 3},
	}
	// Pausing a node's job at the end of a transfer window: the agent
	// answers once the transfer has stopped (10 s at most). When it cannot
	// be reached, the download fails over like any node step.
	pauseOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumAttempts: 3},
	}
	// Best-effort clean-up on a node.
	cleanupOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
	}
)

// watchOptions are those of the long-running watch: its heartbeat timeout
// notices a dead worker, and the retry re-attaches on another one. Many
// attempts are allowed because a worker restart spends one.
func watchOptions(heartbeat time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 7 * 24 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: 10 * time.Second, MaximumAttempts: 20},
	}
}

// waitForNodeSteps is the change that made a cancelled workflow wait for
// its running node steps to stop; histories recorded before it replay
// without.
const waitForNodeSteps = "wait-for-node-steps-on-cancel"

// nodeStepOptions are o for a step that talks to the node (start, watch):
// on cancel the workflow waits until the running attempt has really
// stopped, so the clean-up's cancel on the node never races a start
// still on its way or a watch that goes on polling and writing progress
// to a record already CANCELLED.
func nodeStepOptions(ctx workflow.Context, o workflow.ActivityOptions) workflow.ActivityOptions {
	o.WaitForCancellation = workflow.GetVersion(ctx, waitForNodeSteps, workflow.DefaultVersion, 1) == 1
	return o
}

// noNodeBackoff is the first and the longest wait between looks for a node.
const (
	noNodeFirstWait = time.Second
	noNodeMaxWait   = 30 * time.Second
)
