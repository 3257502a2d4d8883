package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/workflows"
)

func newRemoveEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	env := newTestEnv()
	env.RegisterWorkflowWithOptions(workflows.RemoveImageFileWorkflow, workflow.RegisterOptions{Name: workflows.RemoveFileWorkflowType})
	env.RegisterActivity(a)
	return env
}

func TestRemoveImageFileRemovesTheFileThenTheRecord(t *testing.T) {
	env := newRemoveEnv(t)
	env.OnActivity(a.RemoveImageFile, mock.Anything, activities.ImageFileRequest{ImageID: imageID}).Return(activities.ImageFileRemoved{NodeID: "node-2"}, nil).Once()
	env.OnActivity(a.DeleteImageRecord, mock.Anything, imageID).Return(nil).Once()
	env.ExecuteWorkflow(workflows.RemoveFileWorkflowType, workflows.RemoveFileInput{ImageID: imageID})
	var res workflows.RemoveFileResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if !res.FileRemoved || res.NodeID != "node-2" || res.LeftBehind != "" {
		t.Errorf("result = %+v", res)
	}
	env.AssertExpectations(t)
}

func TestRemoveImageFileKeepsTheImageWhenNoNodeCanRemoveIt(t *testing.T) {
	env := newRemoveEnv(t)
	env.OnActivity(a.RemoveImageFile, mock.Anything, mock.Anything).
		Return(activities.ImageFileRemoved{}, temporal.NewApplicationError("node-1: down", fault.NodeUnreachable))
	env.ExecuteWorkflow(workflows.RemoveFileWorkflowType, workflows.RemoveFileInput{ImageID: imageID})
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != fault.NodeUnreachable || ae.Message() != "node-1: down" {
		t.Fatalf("workflow error = %v, want node_unreachable with the activity's message", err)
	}
	env.AssertActivityNumberOfCalls(t, "RemoveImageFile", 2) // the retry policy's two attempts
	env.AssertActivityNumberOfCalls(t, "DeleteImageRecord", 0)
}

func TestRemoveImageFileWithForceDeletesTheRecordAndSaysTheFileStayed(t *testing.T) {
	env := newRemoveEnv(t)
	env.OnActivity(a.RemoveImageFile, mock.Anything, mock.Anything).
		Return(activities.ImageFileRemoved{}, temporal.NewNonRetryableApplicationError("node-1 is not registered", fault.NodeUnreachable, nil))
	env.OnActivity(a.DeleteImageRecord, mock.Anything, imageID).Return(nil).Once()
	env.ExecuteWorkflow(workflows.RemoveFileWorkflowType, workflows.RemoveFileInput{ImageID: imageID, Force: true})
	var res workflows.RemoveFileResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.FileRemoved || res.LeftBehind == "" {
		t.Errorf("result = %+v, want the file left behind with the reason", res)
	}
	env.AssertExpectations(t)
}

func TestRemoveImageFileOfAnImageAlreadyGoneDoesNothing(t *testing.T) {
	env := newRemoveEnv(t)
	env.OnActivity(a.RemoveImageFile, mock.Anything, mock.Anything).Return(activities.ImageFileRemoved{Gone: true}, nil).Once()
	env.ExecuteWorkflow(workflows.RemoveFileWorkflowType, workflows.RemoveFileInput{ImageID: imageID})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	env.AssertActivityNumberOfCalls(t, "DeleteImageRecord", 0)
}

func newHealthEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	env := newTestEnv()
	env.RegisterWorkflowWithOptions(workflows.NodeHealthWorkflow, workflow.RegisterOptions{Name: workflows.NodeHealthWorkflowType})
	env.RegisterActivity(a)
	return env
}

func TestNodeHealthChecksEveryIntervalAndContinuesAsNew(t *testing.T) {
	env := newHealthEnv(t)
	var at []time.Time
	env.OnActivity(a.CheckAllNodes, mock.Anything).Return(func(ctx context.Context) (activities.NodeHealthSummary, error) {
		at = append(at, env.Now())
		if len(at) == 3 {
			return activities.NodeHealthSummary{}, errors.New("database down") // a failed round does not end it
		}
		return activities.NodeHealthSummary{Online: 1}, nil
	})
	env.ExecuteWorkflow(workflows.NodeHealthWorkflowType, workflows.NodeHealthInput{Interval: 10 * time.Second})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	if len(at) != 200 {
		t.Fatalf("%d rounds before continuing as new, want 200", len(at))
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d != 10*time.Second {
			t.Fatalf("round %d came %s after the one before, want the 10s interval", i, d)
		}
	}
}

func TestNodeHealthSignalChecksAtOnceAndSetsTheInterval(t *testing.T) {
	env := newHealthEnv(t)
	var at []time.Duration
	var start time.Time
	env.OnActivity(a.CheckAllNodes, mock.Anything).Return(func(ctx context.Context) (activities.NodeHealthSummary, error) {
		if start.IsZero() {
			start = env.Now()
		}
		at = append(at, env.Now().Sub(start))
		if len(at) == 4 {
			env.CancelWorkflow()
		}
		return activities.NodeHealthSummary{}, nil
	})
	// A signal at 30s, long before the minute is up, checks at once and
	// sets a 5s interval.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.NodeHealthSignal, workflows.NodeHealthInput{Interval: 5 * time.Second})
	}, 30*time.Second)
	env.ExecuteWorkflow(workflows.NodeHealthWorkflowType, workflows.NodeHealthInput{Interval: time.Minute})
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	want := []time.Duration{0, 30 * time.Second, 35 * time.Second, 40 * time.Second}
	if len(at) != len(want) {
		t.Fatalf("rounds at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("rounds at %v, want %v", at, want)
		}
	}
}
