package api

import (
	"context"
	"sync"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/store"
)

// checkNodesLoop checks every node's agent every HealthInterval until the
// server closes, so that node status (online/offline) stays current.
func (s *Server) checkNodesLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	for {
		s.checkAllNodes()
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
	}
}

// checkAllNodes checks all nodes at once; each check is bounded by the node
// timeout, so one dead node does not hold up the others.
func (s *Server) checkAllNodes() {
	ctx, cancel := s.closingContext()
	defer cancel()
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		s.log.Warn("node health checks: list nodes", "error", err)
		return
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.checkNode(ctx, n)
		}()
	}
	wg.Wait()
}

// checkNodeSoon checks a node just registered, in the background, so its
// status does not wait for the next round.
func (s *Server) checkNodeSoon(n store.Node) {
	if s.opts.HealthInterval <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := s.closingContext()
		defer cancel()
		s.checkNode(ctx, n)
	}()
}

// checkNode asks one agent for its health and records the answer. An agent
// that answers as another node is a misconfiguration (the wrong address),
// and counts as offline.
func (s *Server) checkNode(ctx context.Context, n store.Node) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.NodeTimeout)
	h, err := s.agent(n).Health(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	rec := store.NodeHealth{Online: err == nil, At: time.Now()}
	switch {
	case err != nil:
		if n.Status != store.NodeOffline {
			s.log.Warn("node is offline", "node_id", n.ID, "address", n.Address, "error", err)
		}
	case h.NodeID != "" && h.NodeID != n.ID:
		rec.Online = false
		s.log.Warn("the agent at this node's address says it is another node: check the address or the agent's --node-id",
			"node_id", n.ID, "address", n.Address, "agent_node_id", h.NodeID)
	default:
		rec.Pools = h.PoolIDs()
		rec.Space = make(store.PoolSpace, len(h.Pools))
		for _, p := range h.Pools {
			rec.Space[p.ID] = store.Space{FreeBytes: p.FreeBytes, TotalBytes: p.TotalBytes}
		}
		rec.ActiveDownloads = h.ActiveDownloads
		if n.Status != store.NodeOnline {
			s.log.Info("node is online", "node_id", n.ID, "address", n.Address, "pools", rec.Pools)
		}
	}
	s.metrics.nodeCheck(rec.Online)
	if err := s.store.RecordNodeHealth(ctx, n.ID, rec); err != nil && ctx.Err() == nil {
		s.log.Debug("record node health", "node_id", n.ID, "error", err) // deleted meanwhile
	}
}

// closingContext is a context cancelled when the server closes.
func (s *Server) closingContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// agent returns a client for a node's agent with the node's own
// credential, derived from the cluster secret as the worker does.
func (s *Server) agent(n store.Node) *agentclient.Client {
	return agentclient.New(n.Address, nodeauth.Credential(s.opts.NodeToken, n.ID), agentclient.WithTLS(s.opts.AgentTLS))
}
