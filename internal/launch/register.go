package launch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/quantix/cloudimages/api"
)

// Node is a node to register: its id and its agent's address.
type Node struct{ ID, Address string }

// Pool is a pool to register. A shared pool (one directory every node of
// it sees) is of type nfs, any other of type local.
type Pool struct {
	ID      string
	Shared  bool
	NodeIDs []string
	// ImageFormat, when set ("raw" or "qcow2"), is the format the pool's
	// images are converted to.
	ImageFormat string
}

// Register registers nodes and pools through the REST API. It is
// idempotent: one that exists (409) is left as it is, so a second run of
// `cloudimages dev` finds its images again. A node registered at another
// address is logged, with what to do about it.
func Register(ctx context.Context, c *api.Client, nodes []Node, pools []Pool) error {
	for _, n := range nodes {
		_, status, err := c.CreateNode(ctx, n.ID, n.Address)
		if status == http.StatusConflict {
			got, err := c.Node(ctx, n.ID)
			if err != nil {
				return fmt.Errorf("node %s: %w", n.ID, err)
			}
			if got.Address != n.Address {
				slog.Warn("node registered at another address by an earlier run; delete it (DELETE /v1/nodes/"+n.ID+") or listen on the old address",
					"node_id", n.ID, "registered", got.Address, "listening", n.Address)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("register node %s: %w", n.ID, err)
		}
	}
	for _, p := range pools {
		typ := "local"
		if p.Shared {
			typ = "nfs"
		}
		body := map[string]any{"id": p.ID, "name": p.ID, "type": typ, "shared": p.Shared, "node_ids": p.NodeIDs}
		if p.ImageFormat != "" {
			body["image_format"] = p.ImageFormat
		}
		if status, err := c.Call(ctx, http.MethodPost, "/v1/pools", body, nil); err != nil && status != http.StatusConflict {
			return fmt.Errorf("register pool %s: %w", p.ID, err)
		}
	}
	return nil
}
