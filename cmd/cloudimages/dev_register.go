package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/quantix/cloudimages/api"
)

func (d *devRun) api() *api.Client {
	return &api.Client{BaseURL: "http://" + d.cfg.listen, Token: d.cfg.apiToken, Timeout: 10 * time.Second}
}

// register registers the two nodes and the three pools. It is idempotent:
// on a second run they exist (409) and are left as they are, so the
// images of the first run are found again.
func (d *devRun) register(ctx context.Context) error {
	a := d.api()
	for i, node := range devNodes {
		addr := d.cfg.agentListen[i]
		status, err := a.Call(ctx, http.MethodPost, "/v1/nodes", map[string]any{"id": node, "name": node, "address": addr}, nil)
		if err != nil && status != http.StatusConflict {
			return fmt.Errorf("register node %s: %w", node, err)
		}
		if status == http.StatusConflict {
			var n struct {
				Address string `json:"address"`
			}
			if _, err := a.Call(ctx, http.MethodGet, "/v1/nodes/"+node, nil, &n); err != nil {
				return fmt.Errorf("node %s: %w", node, err)
			}
			if n.Address != addr {
				d.log.Warn("node registered at another address by an earlier run; delete it (DELETE /v1/nodes/"+node+") or give the old --agent-listen",
					"node_id", node, "registered", n.Address, "listening", addr)
			}
		}
	}
	for _, p := range devPools {
		typ := "local"
		if p.shared {
			typ = "nfs"
		}
		body := map[string]any{"id": p.id, "name": p.id, "type": typ, "shared": p.shared, "node_ids": p.nodes}
		if status, err := a.Call(ctx, http.MethodPost, "/v1/pools", body, nil); err != nil && status != http.StatusConflict {
			return fmt.Errorf("register pool %s: %w", p.id, err)
		}
	}
	return nil
}

// printWelcome says where everything is and what to try.
func (d *devRun) printWelcome() {
	api := "http://" + d.cfg.listen
	var ready struct {
		Items []json.RawMessage `json:"items"`
	}
	_, _ = d.api().Call(context.Background(), http.MethodGet, "/v1/images?status=READY", nil, &ready)
	web := d.webURL
	if web == "" {
		web = "(the Temporal server at " + d.cfg.temporalAddress + " was already running: its own UI)"
	}
	auth := ""
	if d.cfg.apiToken != "" {
		auth = ` -H "Authorization: Bearer $CLOUDIMAGES_API_TOKEN"`
	}
	w := os.Stdout
	fmt.Fprintf(w, "\ncloudimages dev is running; data in %s, logs in %s\n\n", d.cfg.dataDir, d.cfg.dataDir+"/logs")
	fmt.Fprintf(w, "  API and web UI  %s\n", api)
	fmt.Fprintf(w, "  Temporal Web    %s\n", web)
	fmt.Fprintf(w, "  Temporal        %s (namespace default)\n", d.cfg.temporalAddress)
	fmt.Fprintf(w, "  node agents     node-1 %s (pools local-1, shared-nfs), node-2 %s (pools local-2, shared-nfs)\n", d.cfg.agentListen[0], d.cfg.agentListen[1])
	fmt.Fprintf(w, "  READY images    %d\n\n", len(ready.Items))
	fmt.Fprintf(w, "Try:\n")
	fmt.Fprintf(w, "  curl -s%s %s/v1/catalog\n", auth, api)
	fmt.Fprintf(w, "  curl -s%s -X POST %s/v1/images -H 'Content-Type: application/json' -d '{\"catalog_id\": \"cirros-0.6.3\", \"pool_id\": \"shared-nfs\"}'\n", auth, api)
	fmt.Fprintf(w, "  curl -s%s '%s/v1/images?pool_id=shared-nfs'\n", auth, api)
	fmt.Fprintf(w, "  bin/temporal workflow list --address %s --query 'PoolId=\"shared-nfs\"'\n", d.cfg.temporalAddress)
	fmt.Fprintf(w, "  bin/temporal workflow start --address %s --task-queue image-downloads --type DownloadImageWorkflow \\\n", d.cfg.temporalAddress)
	fmt.Fprintf(w, "      --workflow-id image-cirros-local-1 --input '{\"catalog_id\": \"cirros-0.6.3\", \"pool_id\": \"local-1\"}'\n\n")
	fmt.Fprintf(w, "Ctrl-C stops everything.\n")
}
