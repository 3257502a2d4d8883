package api

import (
	"context"

	"github.com/quantix/cloudimages/workflows/contract"
)

// checkNodesSoon asks the worker's NodeHealthWorkflow to check every node
// now, so that a node just registered shows its status without waiting
// for the next round. The API never asks an agent itself: it reads node
// status from the database. Before any worker has started there is no
// workflow to ask; the first worker checks every node when it starts.
func (s *Server) checkNodesSoon() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.TemporalTimeout)
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := s.temporal.SignalWorkflow(ctx, contract.NodeHealthWorkflowID, "", contract.NodeHealthSignal, contract.NodeHealthInput{})
		if err != nil {
			s.log.Debug("ask the node health workflow for a check", "error", err)
		}
	}()
}
