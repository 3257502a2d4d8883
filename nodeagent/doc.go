// Package nodeagent is the agent that runs on every hypervisor node and
// downloads images into that node's storage pools: its HTTP server and its
// download engine, which applies the source package's URL policy to every
// address it dials. Its wire types and Go client are in
// nodeagent/agentclient, which is all that callers import.
package nodeagent
