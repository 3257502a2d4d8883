package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/workflows"
)

func (d *devRun) api() *api.Client {
	return &api.Client{BaseURL: "http://" + d.cfg.listen, Token: d.cfg.apiToken, Timeout: 10 * time.Second}
}

// register registers the nodes and their pools. It is idempotent:
// on a second run they exist and are left as they are, so the images of
// the first run are found again.
func (d *devRun) register(ctx context.Context) error {
	var nodes []launch.Node
	for i, node := range d.nodes {
		nodes = append(nodes, launch.Node{ID: node, Address: d.cfg.agentListen[i]})
	}
	return launch.Register(ctx, d.api(), nodes, d.pools)
}

// poolsOf lists the pools a node serves.
func (d *devRun) poolsOf(node string) []string {
	var ids []string
	for _, p := range d.pools {
		if slices.Contains(p.NodeIDs, node) {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// printWelcome says where everything is and what to try.
func (d *devRun) printWelcome() {
	api := "http://" + d.cfg.listen
	ready, _ := d.api().Images(context.Background(), url.Values{"status": {"READY"}})
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
	for i, node := range d.nodes {
		label := ""
		if i == 0 {
			label = "node agents"
		}
		fmt.Fprintf(w, "  %-15s %s %s (pools %s)\n", label, node, d.cfg.agentListen[i], strings.Join(d.poolsOf(node), ", "))
	}
	fmt.Fprintf(w, "  READY images    %d\n\n", len(ready))
	fmt.Fprintf(w, "Try:\n")
	if api != defaultAPIURL {
		fmt.Fprintf(w, "  export %s=%s\n", envAPIURL, api)
	}
	fmt.Fprintf(w, "  bin/cloudimages catalog ls\n")
	fmt.Fprintf(w, "  bin/cloudimages images pull cirros-0.6.3 --pool shared-nfs --wait\n")
	fmt.Fprintf(w, "  bin/cloudimages images upload FILE --pool local-1 --wait   # an image you have: no internet needed\n")
	fmt.Fprintf(w, "  bin/cloudimages images ls\n")
	fmt.Fprintf(w, "  curl -s%s %s/v1/catalog\n", auth, api)
	fmt.Fprintf(w, "  curl -s%s -X POST %s/v1/images -H 'Content-Type: application/json' -d '{\"catalog_id\": \"cirros-0.6.3\", \"pool_id\": \"shared-nfs\"}'\n", auth, api)
	fmt.Fprintf(w, "  curl -s%s '%s/v1/images?pool_id=shared-nfs'\n", auth, api)
	if len(d.nodes) > 1 {
		fmt.Fprintf(w, "  bin/cloudimages distributions create cirros-0.6.3 --all-pools --wait   # once from the mirror, then node to node\n")
		fmt.Fprintf(w, "  curl -s%s -X POST %s/v1/distributions -H 'Content-Type: application/json' -d '{\"catalog_id\": \"cirros-0.6.3\", \"all_pools\": true}'   # once from the mirror, then node to node\n", auth, api)
	}
	fmt.Fprintf(w, "  bin/temporal workflow list --address %s --query 'PoolId=\"shared-nfs\"'\n", d.cfg.temporalAddress)
	fmt.Fprintf(w, "  bin/temporal workflow start --address %s --task-queue %s --type %s \\\n", d.cfg.temporalAddress, workflows.TaskQueue, workflows.WorkflowType)
	fmt.Fprintf(w, "      --workflow-id image-cirros-local-1 --input '{\"catalog_id\": \"cirros-0.6.3\", \"pool_id\": \"local-1\"}'\n\n")
	fmt.Fprintf(w, "Ctrl-C stops everything.\n")
}
