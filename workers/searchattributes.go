package workers

import (
	"context"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/workflows"
)

// EnsureSearchAttributes registers the workflow's Keyword search attributes
// that the namespace lacks, so `temporal workflow list --query 'PoolId="…"'`
// works on any server, not only on a dev server started with them.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	ops := c.OperatorService()
	resp, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
	}
	missing := map[string]enums.IndexedValueType{}
	var added []string
	for _, name := range workflows.SearchAttributeNames {
		if _, ok := resp.GetCustomAttributes()[name]; ok {
			continue
		}
		if t, ok := resp.GetSystemAttributes()[name]; ok {
			return nil, fmt.Errorf("search attribute %s is a system attribute of type %s on this server", name, t)
		}
		missing[name] = enums.INDEXED_VALUE_TYPE_KEYWORD
		added = append(added, name)
	}
	if len(missing) == 0 {
		return nil, nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil {
		return nil, fmt.Errorf("add search attributes %v to namespace %q (the worker needs operator rights, or add them with `temporal operator search-attribute create`): %w", added, namespace, err)
	}
	return added, nil
}
