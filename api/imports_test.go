package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAPIDoesNotTalkToAgents: the API reaches node agents only through
// the worker's workflows, so neither the agent's server nor its client may
// be among its dependencies, direct or not (importing the workflows
// package would pull in the activities, and with them the client).
func TestAPIDoesNotTalkToAgents(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/quantix/cloudimages/api").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/quantix/cloudimages/nodeagent", strings.HasPrefix(dep, "github.com/quantix/cloudimages/nodeagent/"),
			dep == "github.com/quantix/cloudimages/activities":
			t.Errorf("api depends on %s: reach the agents through a workflow (workflows/contract names them) instead", dep)
		}
	}
}
