package activities_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
)

// TestActivitiesLogWithTheirWorkflowAndAttempt: an activity logs through
// the worker's logger with the workflow id, activity and attempt on every
// line, so an image's lines can be found by its workflow.
func TestActivitiesLogWithTheirWorkflowAndAttempt(t *testing.T) {
	b := newBench(t, false)
	var buf bytes.Buffer
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(b.acts)
	if _, err := env.ExecuteActivity(b.acts.MarkFailed, activities.FailRequest{ImageID: "img-1", Code: fault.UpstreamError, Message: "mirror down"}); err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "image failed" {
			continue
		}
		for _, key := range []string{"WorkflowID", "ActivityID", "ActivityType", "Attempt", "image_id"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("the line %s has no %s", line, key)
			}
		}
		return
	}
	t.Fatalf("no \"image failed\" line in the activity's log:\n%s", buf.String())
}
