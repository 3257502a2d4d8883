package workflows_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWorkflowsDoNotTouchTheWorld: the workflows decide, the activities
// act. So the workflow code itself imports neither the store nor the
// agent's wire; it speaks of images in package imagestate's words and
// reaches the database and the agents only through activities.
func TestWorkflowsDoNotTouchTheWorld(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`,
		"github.com/quantix/cloudimages/workflows", "github.com/quantix/cloudimages/workflows/contract").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		switch {
		case imp == "github.com/quantix/cloudimages/store",
			strings.HasPrefix(imp, "github.com/quantix/cloudimages/nodeagent"):
			t.Errorf("the workflows import %s: go through an activity instead", imp)
		}
	}
}
