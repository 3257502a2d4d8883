package nodeagent

import (
	"context"
	"net/http"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// Source credentials: a request may carry a credential for its mirror's
// host. The agent keeps its secret in this process only — the job record
// on disk holds the request redacted — so after a restart a job that needs
// one waits (StateWaitingCredential) until the worker sends the same
// request again with the secret; the worker's watch does that when it sees
// the state.

// supply gives the job its credential's secret, once the request names one
// and the secret is there; the job waiting for it then goes on.
func (j *job) supply(c *agentclient.Credential) {
	if !c.HasSecret() {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rec.Request.Credential == nil || j.rec.Request.Credential.Name != c.Name {
		return
	}
	first := j.secret == nil
	j.secret = c
	if first {
		close(j.credReady)
	}
}

// credential is the job's credential with its secret; nil when the
// request names none (or the secret is not there yet).
func (j *job) credential() *agentclient.Credential {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.secret
}

// waitCredential holds a job whose request names a credential until the
// secret is there, in StateWaitingCredential, which is recorded so that
// a poll says why nothing moves.
func (j *job) waitCredential(ctx context.Context) error {
	j.mu.Lock()
	named, ready := j.rec.Request.Credential, j.secret != nil
	if j.rec.Request.Peer != nil {
		named, ready = &agentclient.Credential{Name: "peer token"}, j.peer != nil
	}
	j.mu.Unlock()
	if named == nil || ready {
		return nil
	}
	j.update(func(r *record) { r.State = agentclient.StateWaitingCredential })
	j.save()
	j.log.Info("waiting for the worker to send the download's credential again (secrets are kept in memory only)", "credential", named.Name)
	select {
	case <-j.credReady:
		j.log.Info("credential received; the download goes on", "credential", named.Name)
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type credentialKey struct{}

// withCredential puts a credential in a request's context, where the
// redirect check finds it again (applyCredential).
func withCredential(ctx context.Context, c *agentclient.Credential) context.Context {
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, credentialKey{}, c)
}

// applyCredential sets the credential of the request's context on it when
// it goes to the credential's host, and removes it otherwise: the HTTP
// client copies the first request's headers to every redirect, and only
// Authorization (not X-Api-Key, say) is dropped for another domain.
func applyCredential(req *http.Request) {
	if c, ok := req.Context().Value(credentialKey{}).(*agentclient.Credential); ok {
		c.Apply(req)
	}
}
