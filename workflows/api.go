// Package workflows holds DownloadImageWorkflow: it picks a node for the
// pool, starts the node-side download, watches it, fails over to another
// node when one fails, and marks the image READY. RemoveImageFileWorkflow
// removes a READY image's file and record, and NodeHealthWorkflow checks
// every node's agent, once per cluster.
package workflows

import "github.com/quantix/cloudimages/workflows/contract"

// The names and types of the contract package, under the names the
// workflow code and its tests have always used. Callers that must not
// pull in the activities (the API) import contract itself.
const (
	TaskQueue     = contract.TaskQueue
	WorkflowType  = contract.WorkflowType
	ProgressQuery = contract.ProgressQuery

	UploadWorkflowType     = contract.UploadWorkflowType
	RemoveFileWorkflowType = contract.RemoveFileWorkflowType
	NodeHealthWorkflowType = contract.NodeHealthWorkflowType
	NodeHealthWorkflowID   = contract.NodeHealthWorkflowID
	NodeHealthSignal       = contract.NodeHealthSignal
	RefreshWorkflowType    = contract.RefreshWorkflowType
	DistributeWorkflowType = contract.DistributeWorkflowType
	DefaultMaxParallel     = contract.DefaultMaxParallel
)

type (
	Input            = contract.Input
	UploadInput      = contract.UploadInput
	Result           = contract.Result
	Progress         = contract.Progress
	Failover         = contract.Failover
	ProgressState    = contract.ProgressState
	RemoveFileInput  = contract.RemoveFileInput
	RemoveFileResult = contract.RemoveFileResult
	NodeHealthInput  = contract.NodeHealthInput
	RefreshInput     = contract.RefreshInput
	RefreshResult    = contract.RefreshResult
	DistributeInput  = contract.DistributeInput
	DistributeResult = contract.DistributeResult
)

var (
	WorkflowID            = contract.WorkflowID
	ImageIDFromWorkflowID = contract.ImageIDFromWorkflowID
	RemoveFileWorkflowID  = contract.RemoveFileWorkflowID
	RefreshWorkflowID     = contract.RefreshWorkflowID
	ScheduleID            = contract.ScheduleID
	NewProgress           = contract.NewProgress

	ImageIDKey             = contract.ImageIDKey
	PoolIDKey              = contract.PoolIDKey
	NodeIDKey              = contract.NodeIDKey
	CatalogIDKey           = contract.CatalogIDKey
	ImageStatusKey         = contract.ImageStatusKey
	SubscriptionIDKey      = contract.SubscriptionIDKey
	DistributionIDKey      = contract.DistributionIDKey
	DistributionWorkflowID = contract.DistributionWorkflowID
	SearchAttributeNames   = contract.SearchAttributeNames
)
