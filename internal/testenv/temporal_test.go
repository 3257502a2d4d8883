package testenv_test

import (
	"context"
	"path/filepath"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/workflows"
)

// checkSearchAttributes asks the server at address which custom search
// attributes it has and checks that every one the workflow sets is there,
// as a Keyword: a dev server started without one fails here.
func checkSearchAttributes(t *testing.T, address string) {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: address, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.OperatorService().ListSearchAttributes(context.Background(),
		&operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(workflows.SearchAttributeNames) == 0 {
		t.Fatal("workflows.SearchAttributeNames is empty")
	}
	got := resp.GetCustomAttributes()
	for _, name := range workflows.SearchAttributeNames {
		if typ, ok := got[name]; !ok {
			t.Errorf("search attribute %s is not registered on the server (it has %v)", name, got)
		} else if typ != enums.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("search attribute %s is a %s, want Keyword", name, typ)
		}
	}
}

func TestDevServerHasTheSearchAttributes(t *testing.T) {
	srv := testenv.StartDevServer(t)
	checkSearchAttributes(t, srv.Address)
}

// TestLaunchedTemporalHasTheSearchAttributes checks the dev server as
// `cloudimages dev`, the test stack and the bench start it.
func TestLaunchedTemporalHasTheSearchAttributes(t *testing.T) {
	tmp := &launch.Temporal{CLI: testenv.TemporalCLI(t)}
	p := tmp.Process(filepath.Join(t.TempDir(), "temporal.log"))
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	err := launch.StartOnFreePort(context.Background(), p, func() error {
		tmp.Port, tmp.UIPort = testenv.FreePort(t), testenv.FreePort(t)
		tmp.Apply(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSearchAttributes(t, tmp.Address())
}
