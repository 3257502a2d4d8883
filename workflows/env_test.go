package workflows_test

import (
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// newTestEnv is Temporal's test environment as every test here uses it.
// The deadlock detector's default of one second per workflow task is for
// production, where a task that long is a bug; under -race on a loaded
// two-core CI machine the first task of a test (which also warms up the
// test suite) has taken longer and failed tests that were correct.
func newTestEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 30 * time.Second})
	env.SetTestTimeout(time.Minute)
	return env
}
