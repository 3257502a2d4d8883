package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows/contract"
)

// Bounds of a subscription's settings.
const (
	defaultEvery = "6h"
	minEvery     = 5 * time.Second
	defaultKeep  = 3
	maxKeep      = 100
)

// subscriptionRequest is the body of POST /v1/subscriptions.
type subscriptionRequest struct {
	CatalogID string   `json:"catalog_id"`
	PoolIDs   []string `json:"pool_ids"`
	Every     string   `json:"every"`
	Keep      *int     `json:"keep"`
}

// subscriptionChange is the body of PATCH /v1/subscriptions/{id}.
type subscriptionChange struct {
	Paused *bool   `json:"paused"`
	Every  *string `json:"every"`
	Keep   *int    `json:"keep"`
}

// Subscription is a Subscription as the contract shows it, plus whether
// a check runs now and the id of its Temporal Schedule.
type Subscription struct {
	ID             string     `json:"id"`
	CatalogID      string     `json:"catalog_id"`
	PoolIDs        []string   `json:"pool_ids"`
	Every          string     `json:"every"`
	Keep           int        `json:"keep"`
	Paused         bool       `json:"paused"`
	LastCheckedAt  *time.Time `json:"last_checked_at"`
	NextCheckAt    *time.Time `json:"next_check_at"`
	CurrentVersion string     `json:"current_version"`
	LastError      string     `json:"last_error"`
	Checking       bool       `json:"checking"`
	ScheduleID     string     `json:"schedule_id"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// SubscriptionEvent is one thing a check did.
type SubscriptionEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	PoolID  string    `json:"pool_id,omitempty"`
	ImageID string    `json:"image_id,omitempty"`
	Version string    `json:"version,omitempty"`
	Message string    `json:"message"`
}

func viewSubscription(sub store.Subscription) Subscription {
	pools := []string(sub.PoolIDs)
	if pools == nil {
		pools = []string{}
	}
	v := Subscription{ID: sub.ID, CatalogID: sub.CatalogID, PoolIDs: pools, Every: sub.Every, Keep: sub.Keep,
		Paused: sub.Paused, LastCheckedAt: sub.LastCheckedAt, NextCheckAt: sub.NextCheckAt, CurrentVersion: sub.CurrentVersion,
		LastError: sub.LastError, ScheduleID: contract.ScheduleID(sub.ID), CreatedAt: sub.CreatedAt, UpdatedAt: sub.UpdatedAt}
	if sub.Paused {
		v.NextCheckAt = nil // a paused schedule runs nothing, whatever it said before
	}
	return v
}

func (s *Server) createSubscription(c echo.Context) error {
	ctx := c.Request().Context()
	var req subscriptionRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	every, keep, err := s.checkSubscription(c, &req)
	if err != nil {
		return err
	}
	sub := &store.Subscription{ID: uuid.NewString(), CatalogID: req.CatalogID, PoolIDs: req.PoolIDs, Every: req.Every, Keep: keep}
	if err := s.store.CreateSubscription(ctx, sub); errors.Is(err, store.ErrExists) {
		return apiErr(fault.Conflict, "%v: change that subscription (PATCH) or delete it first", err)
	} else if err != nil {
		return err
	}
	if err := s.createSchedule(ctx, sub.ID, every); err != nil {
		if derr := s.store.DeleteSubscription(context.WithoutCancel(ctx), sub.ID); derr != nil {
			s.log.Error("remove the subscription whose schedule was not created", "subscription_id", sub.ID, "error", derr)
		}
		return err
	}
	s.log.Info("subscription created", "subscription_id", sub.ID, "catalog_id", sub.CatalogID, "pools", sub.PoolIDs, "every", sub.Every, "keep", sub.Keep)
	v := s.withSchedule(ctx, *sub)
	return c.JSON(http.StatusCreated, v)
}

// checkSubscription validates a new subscription and fills in defaults.
func (s *Server) checkSubscription(c echo.Context, req *subscriptionRequest) (time.Duration, int, error) {
	if req.CatalogID == "" {
		return 0, 0, apiErr(fault.InvalidRequest, "catalog_id is missing: say which catalog entry to keep current (GET /v1/catalog lists them)")
	}
	if _, ok := s.catalog.Get(req.CatalogID); !ok {
		return 0, 0, apiErr(fault.CatalogEntryNotFound, "no catalog entry %q: GET /v1/catalog lists them", req.CatalogID)
	}
	if len(req.PoolIDs) == 0 {
		return 0, 0, apiErr(fault.InvalidRequest, "pool_ids is missing: name the pools to keep the image current in (GET /v1/pools lists them)")
	}
	for i, id := range req.PoolIDs {
		if err := checkID("pool_ids", id); err != nil {
			return 0, 0, err
		}
		if slices.Contains(req.PoolIDs[:i], id) {
			return 0, 0, apiErr(fault.InvalidRequest, "pool_ids names pool %q twice", id)
		}
		if _, err := s.pool(c, id); err != nil {
			return 0, 0, err
		}
	}
	if req.Every == "" {
		req.Every = defaultEvery
	}
	every, err := checkEvery(req.Every)
	if err != nil {
		return 0, 0, err
	}
	keep := defaultKeep
	if req.Keep != nil {
		keep = *req.Keep
	}
	if err := checkKeep(keep); err != nil {
		return 0, 0, err
	}
	return every, keep, nil
}

func checkEvery(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < minEvery {
		return 0, apiErr(fault.InvalidRequest, "every %q: give a duration of at least %s, such as \"6h\" or \"30m\"", s, minEvery)
	}
	return d, nil
}

func checkKeep(n int) error {
	if n < 1 || n > maxKeep {
		return apiErr(fault.InvalidRequest, "keep is %d: give how many READY versions to keep, the newest included, from 1 to %d", n, maxKeep)
	}
	return nil
}

func (s *Server) listSubscriptions(c echo.Context) error {
	ctx := c.Request().Context()
	subs, err := s.store.Subscriptions(ctx)
	if err != nil {
		return err
	}
	out := make([]Subscription, 0, len(subs))
	for _, sub := range subs {
		out = append(out, s.withSchedule(ctx, sub))
	}
	return c.JSON(http.StatusOK, listOf(out))
}

func (s *Server) getSubscription(c echo.Context) error {
	sub, err := s.subscription(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.withSchedule(c.Request().Context(), sub))
}

func (s *Server) subscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := s.store.Subscription(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return sub, apiErr(fault.NotFound, "subscription %q does not exist: GET /v1/subscriptions lists them", id)
	}
	return sub, err
}

// patchSubscription pauses or resumes the subscription's schedule (it is
// paused, not deleted), or changes how often it runs or how many versions
// it keeps. Temporal is changed first: when it does not answer, nothing
// changes.
func (s *Server) patchSubscription(c echo.Context) error {
	ctx := c.Request().Context()
	var req subscriptionChange
	if err := decode(c, &req); err != nil {
		return err
	}
	sub, err := s.subscription(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if req.Paused == nil && req.Every == nil && req.Keep == nil {
		return apiErr(fault.InvalidRequest, "give at least one of \"paused\", \"every\" and \"keep\"")
	}
	var every time.Duration
	if req.Every != nil {
		if every, err = checkEvery(*req.Every); err != nil {
			return err
		}
	}
	if req.Keep != nil {
		if err := checkKeep(*req.Keep); err != nil {
			return err
		}
	}
	if err := s.changeSchedule(ctx, sub.ID, req.Paused, every); err != nil {
		return err
	}
	sub, err = s.store.UpdateSubscription(ctx, sub.ID, store.SubscriptionChange{Paused: req.Paused, Every: req.Every, Keep: req.Keep})
	if err != nil {
		return err
	}
	s.log.Info("subscription changed", "subscription_id", sub.ID, "paused", sub.Paused, "every", sub.Every, "keep", sub.Keep)
	return c.JSON(http.StatusOK, s.withSchedule(ctx, sub))
}

// deleteSubscription deletes the schedule (no more checks) and the
// subscription; its images stay, as do their -latest links.
func (s *Server) deleteSubscription(c echo.Context) error {
	ctx := c.Request().Context()
	sub, err := s.subscription(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	err = s.temporal.ScheduleClient().GetHandle(tctx, contract.ScheduleID(sub.ID)).Delete(tctx)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return s.temporalError("delete the subscription's schedule", err)
	}
	if err := s.store.DeleteSubscription(ctx, sub.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.log.Info("subscription deleted", "subscription_id", sub.ID, "catalog_id", sub.CatalogID)
	return c.NoContent(http.StatusNoContent)
}

// checkSubscription now: the schedule is triggered, unless a check runs
// already (409, rather than a trigger the schedule would skip) or the
// subscription is paused (409: resume it first).
func (s *Server) checkNow(c echo.Context) error {
	ctx := c.Request().Context()
	sub, err := s.subscription(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if sub.Paused {
		return apiErr(fault.Conflict, "subscription %q is paused: resume it (PATCH {\"paused\": false}) to check", sub.ID)
	}
	tctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	h := s.temporal.ScheduleClient().GetHandle(tctx, contract.ScheduleID(sub.ID))
	desc, err := h.Describe(tctx)
	if err != nil {
		return s.scheduleError(sub.ID, "look up the subscription's schedule", err)
	}
	if running := desc.Info.RunningWorkflows; len(running) > 0 {
		return apiErr(fault.Conflict, "a check of subscription %q is running (workflow %s): wait for it to end", sub.ID, running[0].WorkflowID)
	}
	if err := h.Trigger(tctx, client.ScheduleTriggerOptions{Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP}); err != nil {
		return s.temporalError("trigger the subscription's schedule", err)
	}
	s.log.Info("subscription check requested", "subscription_id", sub.ID)
	v := viewSubscription(sub)
	v.Checking = true
	return c.JSON(http.StatusAccepted, v)
}

func (s *Server) subscriptionEvents(c echo.Context) error {
	ctx := c.Request().Context()
	sub, err := s.subscription(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	limit, err := pageLimit(c.QueryParam("limit"))
	if err != nil {
		return err
	}
	evs, err := s.store.SubscriptionEvents(ctx, sub.ID, limit)
	if err != nil {
		return err
	}
	out := make([]SubscriptionEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, SubscriptionEvent{At: e.At, Kind: e.Kind, PoolID: e.PoolID, ImageID: e.ImageID, Version: e.Version, Message: e.Message})
	}
	return c.JSON(http.StatusOK, listOf(out))
}

// createSchedule creates the subscription's Temporal Schedule: a
// RefreshImageWorkflow every `every`, the first one now. Overlapping runs
// are skipped; the catch-up window of one interval runs a check missed
// while the server was down once, not once per missed interval.
func (s *Server) createSchedule(ctx context.Context, id string, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	opts := client.ScheduleOptions{
		ID:            contract.ScheduleID(id),
		Spec:          client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}},
		Overlap:       enums.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: catchupWindow(every),
		Action: &client.ScheduleWorkflowAction{
			ID:                    contract.RefreshWorkflowID(id),
			Workflow:              contract.RefreshWorkflowType,
			Args:                  []any{contract.RefreshInput{SubscriptionID: id}},
			TaskQueue:             contract.TaskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(contract.SubscriptionIDKey.ValueSet(id)),
		},
		TriggerImmediately: true,
		Note:               "subscription " + id + " (cloudimages): keeps the newest build current",
	}
	_, err := s.temporal.ScheduleClient().Create(ctx, opts)
	if isUndefinedSearchAttribute(err) {
		s.log.Warn("search attributes are not registered in Temporal yet; creating the schedule without them (start a worker to register them)",
			"subscription_id", id, "error", err)
		opts.Action.(*client.ScheduleWorkflowAction).TypedSearchAttributes = temporal.SearchAttributes{}
		_, err = s.temporal.ScheduleClient().Create(ctx, opts)
	}
	if err != nil {
		return s.temporalError("create the subscription's schedule", err)
	}
	return nil
}

// catchupWindow is one interval, and at least Temporal's minimum of 10 s.
func catchupWindow(every time.Duration) time.Duration { return max(every, 10*time.Second) }

// changeSchedule pauses or unpauses the schedule, and changes its
// interval: in one update when both change, so Temporal never applies
// them in the other order.
func (s *Server) changeSchedule(ctx context.Context, id string, paused *bool, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	h := s.temporal.ScheduleClient().GetHandle(ctx, contract.ScheduleID(id))
	var err error
	switch {
	case every > 0:
		err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sch := in.Description.Schedule
			sch.Spec = &client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}}
			if sch.Policy == nil {
				sch.Policy = &client.SchedulePolicies{}
			}
			sch.Policy.CatchupWindow = catchupWindow(every)
			if paused != nil {
				if sch.State == nil {
					sch.State = &client.ScheduleState{}
				}
				sch.State.Paused, sch.State.Note = *paused, "changed through the API"
			}
			return &client.ScheduleUpdate{Schedule: &sch}, nil
		}})
	case paused != nil && *paused:
		err = h.Pause(ctx, client.SchedulePauseOptions{Note: "paused through the API"})
	case paused != nil:
		err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "resumed through the API"})
	}
	if err != nil {
		return s.scheduleError(id, "change the subscription's schedule", err)
	}
	return nil
}

// scheduleError is temporalError, except for a schedule that Temporal no
// longer has (deleted with the temporal CLI): that is a conflict the user
// can resolve, not Temporal being down.
func (s *Server) scheduleError(id, what string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return apiErr(fault.Conflict, "the schedule %s of subscription %q is gone from Temporal (deleted outside the API?): DELETE the subscription and create it again",
			contract.ScheduleID(id), id)
	}
	return s.temporalError(what, err)
}

// withSchedule is the subscription's view with what its schedule says
// now: when it runs next and whether a check runs. When Temporal does not
// answer, the last known next check is shown.
func (s *Server) withSchedule(ctx context.Context, sub store.Subscription) Subscription {
	v := viewSubscription(sub)
	ctx, cancel := context.WithTimeout(ctx, s.opts.TemporalTimeout)
	defer cancel()
	desc, err := s.temporal.ScheduleClient().GetHandle(ctx, contract.ScheduleID(sub.ID)).Describe(ctx)
	if err != nil {
		s.log.Warn("describe a subscription's schedule", "subscription_id", sub.ID, "error", err)
		return v
	}
	v.Checking = len(desc.Info.RunningWorkflows) > 0
	v.NextCheckAt = nil
	if next := desc.Info.NextActionTimes; len(next) > 0 && !sub.Paused {
		at := next[0].UTC()
		v.NextCheckAt = &at
		if sub.NextCheckAt == nil || !sub.NextCheckAt.Equal(at) {
			if _, err := s.store.UpdateSubscription(ctx, sub.ID, store.SubscriptionChange{NextCheckAt: &at}); err != nil {
				s.log.Warn("record a subscription's next check", "subscription_id", sub.ID, "error", err)
			}
		}
	}
	return v
}
