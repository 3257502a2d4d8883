package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
)

// stepTimes is where one workflow's time before and after the transfer
// went, read from its history.
type stepTimes struct {
	started  time.Time                // WorkflowExecutionStarted
	activity map[string]time.Duration // activity type → scheduled to completed (the first run of each)
	order    []string                 // activity types in the order they were scheduled
}

// workflowSteps reads a workflow's history.
func (b *bench) workflowSteps(ctx context.Context, workflowID string) (stepTimes, error) {
	st := stepTimes{activity: map[string]time.Duration{}}
	it := b.stack.tclient.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]struct {
		name string
		at   time.Time
	}{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return st, err
		}
		at := e.GetEventTime().AsTime()
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			st.started = at
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			name := e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			scheduled[e.GetEventId()] = struct {
				name string
				at   time.Time
			}{name, at}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			s, ok := scheduled[e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()]
			if _, seen := st.activity[s.name]; ok && !seen {
				st.activity[s.name] = at.Sub(s.at)
				st.order = append(st.order, s.name)
			}
		}
	}
	return st, nil
}

// stepSummary is the median of each activity's time over the samples, in
// workflow order.
func stepSummary(samples []stepTimes) string {
	if len(samples) == 0 {
		return "n/a"
	}
	by := map[string][]time.Duration{}
	var order []string
	for _, s := range samples {
		for _, name := range s.order {
			if _, ok := by[name]; !ok {
				order = append(order, name)
			}
			by[name] = append(by[name], s.activity[name])
		}
	}
	var out []string
	for _, name := range order {
		if name == "WatchDownload" {
			continue // the transfer itself
		}
		out = append(out, fmt.Sprintf("%s %s", name, ms(median(by[name]))))
	}
	return strings.Join(out, ", ")
}
