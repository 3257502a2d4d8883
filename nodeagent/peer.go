package nodeagent

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// Peer copies: a download whose source is another agent's published file
// (DownloadRequest.Peer) rather than a mirror. It runs the same engine —
// resumable with Range, hashed as it arrives, verified, inspected and
// published the same way — with three differences:
//
//   - The peer's address passes the URL policy as a peer: agents live on
//     the cluster network, so it is dialled even when private networks are
//     refused for mirrors. Only that address is: a redirect from the peer
//     to anywhere else is judged as a mirror URL, and the token is never
//     sent there.
//   - The token, scoped to that one file and short-lived, is kept in
//     memory only, like a source credential's secret: after a restart the
//     job waits (StateWaitingCredential) until the worker sends the request
//     again. The same request naming another peer, or a fresh token, is the
//     same download: the copy goes on from where it was, from the new source.
//   - When the peer cannot be had (unreachable or dropping the connection
//     past the retries, refusing the token, not holding the file), the job
//     fails retryable but keeps its partial data and checkpoint, so that
//     the worker's next try — another peer, a fresh token — resumes it
//     rather than starting again. A cancel, or a failure of the bytes
//     themselves (checksum_mismatch), removes them as for any download.

// maxTokenLen bounds a peer token: a scoped token is under 100 bytes.
const maxTokenLen = 512

// checkPeer judges a request's peer source: names, an address that can be
// a base URL, a token, and a checksum to verify the copy against.
func checkPeer(req *agentclient.DownloadRequest) error {
	p := req.Peer
	for _, f := range []struct{ name, value string }{{"node_id", p.NodeID}, {"pool_id", p.PoolID}, {"file_name", p.FileName}} {
		if f.value == "" {
			return fault.New(fault.InvalidRequest, "peer.%s is required", f.name)
		}
		if err := catalog.ValidName(f.value); err != nil {
			return fault.New(fault.InvalidRequest, "peer.%s: %v", f.name, err)
		}
	}
	if p.Token == "" || len(p.Token) > maxTokenLen || strings.ContainsAny(p.Token, " \r\n\x00") {
		return fault.New(fault.InvalidRequest, "peer.token is required: a token the worker minted from the source node's credential for this file (nodeauth.MintFileRead)")
	}
	if _, err := peerBase(p.Address, false); err != nil {
		return err
	}
	switch {
	case len(req.Mirrors) > 0:
		return fault.New(fault.InvalidRequest, "mirrors go with url, not with peer: a peer copy has one source at a time")
	case req.Credential != nil:
		return fault.New(fault.InvalidRequest, "credential goes with url, not with peer: the peer's token is its credential")
	case req.Checksum == "":
		return fault.New(fault.InvalidRequest, "checksum is required with peer: the copy is verified against the source image's file_checksum")
	}
	return nil
}

// peerBase is the base URL of a peer agent's address: a URL as given, or
// a bare host:port with the scheme this agent itself serves (https with
// --tls-cert), since the agents of a cluster are set up alike.
func peerBase(address string, tls bool) (*url.URL, error) {
	raw := address
	if !strings.Contains(raw, "://") {
		raw = map[bool]string{false: "http://", true: "https://"}[tls] + raw
	}
	u, err := url.Parse(raw)
	switch {
	case address == "":
		return nil, fault.New(fault.InvalidRequest, "peer.address is required: the source agent's address (host:port or a URL)")
	case err != nil:
		return nil, fault.New(fault.InvalidRequest, "peer.address %q is not an address: %v", address, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fault.New(fault.InvalidRequest, "peer.address %q: only http and https", address)
	case u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fault.New(fault.InvalidRequest, "peer.address %q: give the agent's host:port or its base URL, without user, path or query", address)
	}
	u.Path = ""
	return u, nil
}

// peerFileURL is the URL of the peer's published file, its path escaped
// exactly as the token was minted for it.
func peerFileURL(p agentclient.PeerSource, tls bool) (string, error) {
	base, err := peerBase(p.Address, tls)
	if err != nil {
		return "", err
	}
	return base.String() + nodeauth.FileReadPath(p.PoolID, p.FileName), nil
}

// hostPort is the address a URL's connection is dialled at, as the HTTP
// transport names it.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// peerClient is the HTTP client for one peer: its address is dialled
// whatever the policy says of it, directly (never through the egress
// proxy); everything else — redirects — as a mirror, by the agent's own
// options. It keeps no idle connections, so no connection made to the
// peer is ever reused for another request.
func (s *Server) peerClient(peer string) *http.Client {
	o := s.upstreamOpts
	o.peer = peer
	return newUpstreamClient(o)
}

// peerSource is the job's peer with its token; nil when the request names
// no peer, or the token is not there (after a restart).
func (j *job) peerSource() *agentclient.PeerSource {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.peer
}

// supplyPeer gives a peer copy its source: the peer and token of the
// request just received, which replace the ones the job had (another
// source node, a fresh token); the next attempt uses them, and a job
// waiting for a token goes on.
func (j *job) supplyPeer(p *agentclient.PeerSource) {
	if p == nil || p.Token == "" {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.rec.Request.Peer == nil {
		return
	}
	first, moved := j.peer == nil, j.peer != nil && *j.peer != *p
	cp := *p
	j.peer = &cp
	redacted := cp
	redacted.Token = ""
	j.rec.Request.Peer = &redacted
	if first && j.rec.Request.Credential == nil {
		close(j.credReady)
	}
	if moved {
		select {
		case j.sourceMoved <- struct{}{}:
		default:
		}
	}
}

// peerRefusal is a peer's answer that another attempt at the same peer
// with the same token cannot change (401, 403, 404): the job stops at
// once, keeping its partial data for the worker's next try.
type peerRefusal struct{ fe *fault.Error }

func (e *peerRefusal) Error() string { return e.fe.Error() }
func (e *peerRefusal) Unwrap() error { return e.fe }

// refusedByPeer is the error of a peer's 401, 403 or 404.
func refusedByPeer(p *agentclient.PeerSource, status string) error {
	msg := "peer %s answered %s for %s/%s: the token is expired or not for this file and node; the worker sends the request again with a fresh one"
	if strings.HasPrefix(status, "404") {
		msg = "peer %s answered %s: it holds no published %[3]s/%[4]s (any more); the worker sends the request again with another source"
	}
	return &peerRefusal{fault.Retryable(fault.UpstreamNotFound, msg, p.NodeID, status, p.PoolID, p.FileName)}
}

// keepsPartial reports whether a job that ended with err keeps its partial
// data and checkpoint: a peer copy whose source failed, which the next try
// from another source resumes.
func keepsPartial(req agentclient.DownloadRequest, err error) bool {
	if req.Peer == nil || err == nil {
		return false
	}
	var pr *peerRefusal
	if errors.As(err, &pr) {
		return true
	}
	fe := fault.From(err)
	return fe.Retryable && (fe.Code == fault.UpstreamError || fe.Code == fault.UpstreamNotFound)
}
