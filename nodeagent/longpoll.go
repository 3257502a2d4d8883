package nodeagent

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// A long-poll (GET /v1/downloads/{id}?wait=…&after=VERSION) lets the
// worker learn of a job's changes when they happen instead of asking once
// a second: the end of a download reaches it at once, and an idle or
// queued download costs one request per wait rather than one a second.

// bumpLocked counts a change of the job that a GET would show (state:
// its state changed) and wakes the long-polls waiting for one. Called
// with j.mu held.
func (j *job) bumpLocked(state bool) {
	j.version++
	if state {
		j.stateVersion = j.version
	}
	if j.changed != nil {
		close(j.changed)
		j.changed = nil
	}
}

// wake counts a change of state without one: the job was replaced in the
// agent's table (a download started again), so its waiters look again.
func (j *job) wake() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.bumpLocked(true)
}

// versions are the job's version, the version of its last change of state,
// and a channel closed at its next change.
func (j *job) versions() (version, stateVersion int64, changed <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.changed == nil {
		j.changed = make(chan struct{})
	}
	return j.version, j.stateVersion, j.changed
}

// longPoll is a GET's wait and after; wait 0 means answer at once.
type longPoll struct {
	wait  time.Duration
	after int64
}

// parseLongPoll reads ?wait=DURATION&after=VERSION. wait needs after
// (there is nothing to wait for a change from), and after without wait
// answers at once; a wait past MaxLongPollWait is cut to it.
func parseLongPoll(q url.Values) (longPoll, error) {
	ws, as := q.Get("wait"), q.Get("after")
	if ws == "" && as == "" {
		return longPoll{}, nil
	}
	var lp longPoll
	if as != "" {
		after, err := strconv.ParseInt(as, 10, 64)
		if err != nil || after < 0 {
			return longPoll{}, fault.New(fault.InvalidRequest, "after=%q: want the version (a number ≥ 0) of the Download you have", as)
		}
		lp.after = after
	}
	if ws != "" {
		wait, err := time.ParseDuration(ws)
		if err != nil || wait < 0 {
			return longPoll{}, fault.New(fault.InvalidRequest, "wait=%q: want a duration such as 25s (at most %s)", ws, agentclient.MaxLongPollWait)
		}
		if as == "" {
			return longPoll{}, fault.New(fault.InvalidRequest, "wait needs after=VERSION: the version of the Download you have, which the answer waits to change from")
		}
		lp.wait = min(wait, agentclient.MaxLongPollWait)
	}
	return lp, nil
}

// await holds a GET of job id until the job is no longer at lp.after: at
// once when it ended or waits for its caller (or lp.after is not one of
// its versions: a restarted agent, a job made again), once
// LongPollProgressEvery has passed since the request came when only its
// bytes moved or it went on to a passing state, or at the end of the
// wait. It returns the job to answer with (the table may hold a new one
// under the id by then), or false when the id is gone.
func (s *Server) await(ctx context.Context, id string, j *job, lp longPoll) (*job, bool) {
	if lp.wait <= 0 {
		return j, true
	}
	s.metrics.longPollsWaiting.Inc()
	defer s.metrics.longPollsWaiting.Dec()
	j, answer := s.awaitChange(ctx, id, j, lp)
	s.metrics.longPolls.WithLabelValues(answer).Inc()
	return j, j != nil
}

// awaitChange is await's wait; it says what ended it (the label of
// cloudimages_nodeagent_long_polls_total), with a nil job when the id is
// gone.
func (s *Server) awaitChange(ctx context.Context, id string, j *job, lp longPoll) (*job, string) {
	start := time.Now()
	deadline := time.NewTimer(lp.wait)
	defer deadline.Stop()
	var progressDue <-chan time.Time // set once the job moved, until the second is up
	for {
		cur, ok := s.job(id)
		switch {
		case !ok:
			return nil, "gone"
		case cur != j:
			return cur, "changed"
		}
		version, stateVersion, changed := j.versions()
		switch {
		case version == lp.after:
		case lp.after > version || lp.after < j.firstVersion:
			return j, "changed" // not a version of this job
		case stateVersion > lp.after && !passing(j.state()):
			return j, "changed"
		case time.Since(start) >= agentclient.LongPollProgressEvery:
			if stateVersion > lp.after {
				return j, "changed"
			}
			return j, "progress"
		case progressDue == nil:
			t := time.NewTimer(agentclient.LongPollProgressEvery - time.Since(start))
			defer t.Stop()
			progressDue = t.C
		}
		select {
		case <-changed:
		case <-progressDue:
		case <-deadline.C:
			return j, "timeout"
		case <-ctx.Done():
			return j, "gone" // the caller went away: nothing reads the answer
		case <-s.draining:
			return j, "stopping" // answer now, not after Shutdown's wait
		}
	}
}

// passing reports whether state is one the job goes on from by itself
// (queued, running, verifying, converting). A move into one is told like
// byte progress, within a second: what a watcher must act on at once is
// the end of the job (completed, failed, cancelled) or a job that waits
// for it (waiting_credential, paused). A download that moves all along
// then costs its watcher no more requests than a poll once a second.
func passing(state string) bool {
	switch state {
	case agentclient.StateQueued, agentclient.StateRunning, agentclient.StateVerifying, agentclient.StateConverting:
		return true
	}
	return false
}
