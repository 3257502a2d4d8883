package testenv_test

import (
	"context"
	"testing"

	"go.temporal.io/api/operatorservice/v1"

	"github.com/quantix/cloudimages/internal/testenv"
)

func TestDevServerHasTheSearchAttributes(t *testing.T) {
	srv := testenv.StartDevServer(t)
	resp, err := srv.Client().OperatorService().ListSearchAttributes(context.Background(),
		&operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range testenv.SearchAttributes {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s not registered", name)
		}
	}
}
