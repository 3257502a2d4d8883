package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (a download started from the temporal CLI, a failover after a node was
// killed, a cancellation, a wait for a node that never came, a READY
// image's removal, rounds of node health checks) against the
// current workflow code: a change that would break running workflows
// fails here. Record them again with
// CLOUDIMAGES_RECORD_HISTORY=1 go test ./workers/ — only for a change
// that is meant to be incompatible (and then version it with
// workflow.GetVersion instead, while old runs may still be going).
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d recorded histories in testdata, want at least 4", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
			r.RegisterWorkflowWithOptions(workflows.RemoveImageFileWorkflow, workflow.RegisterOptions{Name: workflows.RemoveFileWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.NodeHealthWorkflow, workflow.RegisterOptions{Name: workflows.NodeHealthWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.RefreshImageWorkflow, workflow.RegisterOptions{Name: workflows.RefreshWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.UploadImageWorkflow, workflow.RegisterOptions{Name: workflows.UploadWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.DistributeImageWorkflow, workflow.RegisterOptions{Name: workflows.DistributeWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
