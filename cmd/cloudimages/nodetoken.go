package main

import (
	"context"
	"fmt"
	"os"

	"github.com/quantix/cloudimages/nodeauth"
)

// runNodeToken prints one node's credential, derived from the cluster
// secret, for the operator to give that node's agent as its --node-token.
func runNodeToken(_ context.Context, args []string) error {
	var secret, nodeID, out string
	f := newFlags("node-token", "Prints a node's credential: give it to that node's agent as --node-token (or --node-token-file). The worker derives the same credential from the cluster secret, so no other node's agent accepts it.")
	f.string(&nodeID, "node-id", "CLOUDIMAGES_NODE_ID", "", "the node's id, as registered with POST /v1/nodes (required)")
	f.secret(&secret, "node-token", "CLOUDIMAGES_NODE_TOKEN", "the cluster secret: the --node-token of the worker and the API")
	f.string(&out, "out", "CLOUDIMAGES_NODE_TOKEN_OUT", "", "write the credential to this file (mode 0600) instead of printing it, e.g. into a volume only that node's agent mounts")
	if err := f.parse(args); err != nil {
		return err
	}
	if nodeID == "" {
		return usagef("--node-id is required: the id of the node whose credential to print")
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	if secret == "" {
		return usagef("the cluster secret is required: give --node-token, CLOUDIMAGES_NODE_TOKEN or --node-token-file (the worker's --node-token)")
	}
	cred := nodeauth.Credential(secret, nodeID)
	if out == "" {
		_, err := fmt.Println(cred)
		return err
	}
	if err := os.WriteFile(out, []byte(cred+"\n"), 0o600); err != nil {
		return fmt.Errorf("write node %s's credential: %w", nodeID, err)
	}
	return os.Chmod(out, 0o600) // WriteFile keeps the mode of a file that exists
}
