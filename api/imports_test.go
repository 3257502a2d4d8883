package api_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIDoesNotTalkToAgents: the API reaches node agents through the
// worker's workflows, with one exception: an upload's bytes, which it
// streams to the receiving agent with the agent's client (uploads.go, the
// only file that may import it). Neither the agent's server nor the
// activities may be among its dependencies, direct or not (importing the
// workflows package would pull in the activities).
func TestAPIDoesNotTalkToAgents(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/quantix/cloudimages/api").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/quantix/cloudimages/nodeagent/agentclient":
		case dep == "github.com/quantix/cloudimages/nodeagent", strings.HasPrefix(dep, "github.com/quantix/cloudimages/nodeagent/"),
			dep == "github.com/quantix/cloudimages/activities":
			t.Errorf("api depends on %s: reach the agents through a workflow (workflows/contract names them) instead", dep)
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "uploads.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), `"github.com/quantix/cloudimages/nodeagent/agentclient"`) {
			t.Errorf("%s imports the agent's client: only uploads.go streams to agents; reach them through a workflow instead", f)
		}
	}
}
