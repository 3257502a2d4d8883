package contract

import "go.temporal.io/sdk/temporal"

// DistributeWorkflowType is the registered name of DistributeImageWorkflow.
const DistributeWorkflowType = "DistributeImageWorkflow"

// DistributionWorkflowID is the workflow id of a distribution.
func DistributionWorkflowID(distributionID string) string { return "distribution-" + distributionID }

// DistributionIDKey is set on a distribution's workflow and on the
// downloads it starts: `temporal workflow list --query
// 'DistributionId="ID"'` lists them all.
var DistributionIDKey = temporal.NewSearchAttributeKeyKeyword("DistributionId")

// DefaultMaxParallel is how many copies may read from one node at once
// when a distribution does not say.
const DefaultMaxParallel = 4

// DistributeInput starts DistributeImageWorkflow for a distribution the
// API created (or retries its failed pools, posted again).
type DistributeInput struct {
	DistributionID string `json:"distribution_id"`
	// MaxParallel is how many copies read from one node at once.
	MaxParallel int `json:"max_parallel"`
}

// DistributeResult is how a distribution ended: its status (READY or
// PARTIAL, FAILED when no copy was made) and the pools whose copy failed.
type DistributeResult struct {
	DistributionID string   `json:"distribution_id"`
	Status         string   `json:"status"`
	FailedPools    []string `json:"failed_pools,omitempty"`
}

// How a distribution ends (DistributeResult.Status), as in the contract.
const (
	DistributionRunning   = "RUNNING"
	DistributionReady     = "READY"
	DistributionPartial   = "PARTIAL"
	DistributionFailed    = "FAILED"
	DistributionCancelled = "CANCELLED"
)

// CopySourceMirror is a distribution copy's source when its bytes came from
// the mirror; CopySourceNode names the node whose READY copy it read.
const CopySourceMirror = "mirror"

// CopySourceNode is the source of a copy read from a node's READY copy.
func CopySourceNode(nodeID string) string { return "node:" + nodeID }
