package workers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

func TestActivityOutcomeNamesTheErrorCode(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name          string
		ctx           context.Context
		err           error
		outcome, code string
	}{
		{"completed", context.Background(), nil, "completed", ""},
		{"typed", context.Background(), temporal.NewNonRetryableApplicationError("bad bytes", "checksum_mismatch", nil), "failed", "checksum_mismatch"},
		{"wrapped typed", context.Background(), fmt.Errorf("watch: %w", temporal.NewApplicationError("gone", "node_unreachable")), "failed", "node_unreachable"},
		{"untyped", context.Background(), errors.New("boom"), "failed", "other"},
		{"context cancelled", cancelled, errors.New("read: context canceled"), "cancelled", ""},
		{"cancelled error", context.Background(), temporal.NewCanceledError(), "cancelled", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			outcome, code := activityOutcome(c.ctx, c.err)
			if outcome != c.outcome || code != c.code {
				t.Errorf("activityOutcome(%v) = %q, %q; want %q, %q", c.err, outcome, code, c.outcome, c.code)
			}
		})
	}
}

func TestWorkflowOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil:                            "completed",
		&workflow.ContinueAsNewError{}: "continued_as_new",
		temporal.NewCanceledError():    "cancelled",
		errors.New("no node"):          "failed",
	} {
		if got := workflowOutcome(err); got != want {
			t.Errorf("workflowOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}
