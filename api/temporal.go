package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// startDownload starts the image's workflow, or finds the one that runs:
// the workflow id comes from the image and the USE_EXISTING conflict
// policy makes a second start of a running one a no-op, so a retried
// request, a racing one, and one that heals a crash between the insert and
// the start all end with the same single workflow.
func (s *Server) startDownload(ctx context.Context, img store.Image, in contract.Input) error {
	return s.startWorkflow(ctx, img, contract.WorkflowType, in)
}

// startWorkflow starts the image's workflow of type workflowType with in,
// as startDownload says.
func (s *Server) startWorkflow(ctx context.Context, img store.Image, workflowType string, in any) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	attrs := []temporal.SearchAttributeUpdate{contract.ImageIDKey.ValueSet(img.ID),
		contract.PoolIDKey.ValueSet(img.PoolID), contract.ImageStatusKey.ValueSet(img.Status)}
	if img.CatalogID != "" {
		attrs = append(attrs, contract.CatalogIDKey.ValueSet(img.CatalogID))
	}
	opts := client.StartWorkflowOptions{
		ID:                       contract.WorkflowID(img.ID),
		TaskQueue:                contract.TaskQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(attrs...),
		StaticSummary:            fmt.Sprintf("%s into pool %s", img.Name, img.PoolID),
	}
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, workflowType, in)
	if isUndefinedSearchAttribute(err) {
		// The worker registers the search attributes when it starts; until
		// one has run against this namespace, start without them rather
		// than not at all.
		s.log.Warn("search attributes are not registered in Temporal yet; starting without them (start a worker to register them)",
			"image_id", img.ID, "error", err)
		opts.TypedSearchAttributes = temporal.SearchAttributes{}
		_, err = s.temporal.ExecuteWorkflow(ctx, opts, workflowType, in)
	}
	if err != nil {
		return s.temporalError("start the download workflow", err)
	}
	return nil
}

func isUndefinedSearchAttribute(err error) bool {
	var inv *serviceerror.InvalidArgument
	return errors.As(err, &inv) && strings.Contains(strings.ToLower(inv.Error()), "search attribute")
}

// inputFor is the workflow input that downloads img. A URL download
// without a checksum was accepted unverified when it was created.
func inputFor(img store.Image, preferredNode string, allowUnverified bool) contract.Input {
	in := contract.Input{ImageID: img.ID, CatalogID: img.CatalogID, Name: img.Name, Checksum: img.Checksum,
		PoolID: img.PoolID, PreferredNodeID: preferredNode, AllowUnverified: allowUnverified || img.Unverified,
		Format: img.DeclaredFormat, Credential: img.Credential}
	if img.CatalogID == "" {
		in.URL = img.SourceURL
	}
	if strings.HasPrefix(img.SourceKey, "catalog:"+img.CatalogID+"@") {
		in.Version = img.Version // one build, as a subscription started it
	}
	return in
}

// workflowState says whether the image's workflow runs, has ended, or
// was never started.
type workflowState int

const (
	workflowMissing workflowState = iota
	workflowRunning
	workflowClosed
)

func (s *Server) describeDownload(ctx context.Context, imageID string) (workflowState, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	resp, err := s.temporal.DescribeWorkflowExecution(ctx, contract.WorkflowID(imageID), "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return workflowMissing, nil
	case err != nil:
		return 0, s.temporalError("look up the download workflow", err)
	}
	if resp.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return workflowRunning, nil
	}
	return workflowClosed, nil
}

// cancelDownload asks the image's workflow to cancel; the workflow stops
// the node's job, removes the partial data and marks the image CANCELLED.
// A workflow that has ended already is not an error.
func (s *Server) cancelDownload(ctx context.Context, imageID string) (sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	err = s.temporal.CancelWorkflow(ctx, contract.WorkflowID(imageID), "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return false, nil
	case err != nil:
		return false, s.temporalError("cancel the download workflow", err)
	}
	return true, nil
}

// temporalError turns a failed call to Temporal into temporal_unavailable
// with a message that says where Temporal was expected.
func (s *Server) temporalError(what string, err error) error {
	var inv *serviceerror.InvalidArgument
	if errors.As(err, &inv) {
		return fmt.Errorf("%s: %w", what, err) // a bug of ours: 500
	}
	addr := s.opts.TemporalAddress
	if addr == "" {
		addr = "its configured address"
	}
	s.log.Warn("temporal call failed", "what", what, "error", err)
	return &fault.Error{Code: fault.TemporalUnavailable, Retryable: true,
		Message: fmt.Sprintf("could not %s: Temporal at %s (namespace %q) did not answer within %s (%v). Check that the Temporal server runs and that --temporal-address points at it, then try again.",
			what, addr, s.opts.TemporalNamespace, s.opts.TemporalTimeout, shortError(err))}
}

func shortError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}
