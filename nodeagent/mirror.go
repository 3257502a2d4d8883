package nodeagent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/fault"
)

// attempt is one HTTP request to the mirror, from t.done on.
func (t *transfer) attempt(ctx context.Context) error {
	if t.total >= 0 && t.done == t.total && t.done > 0 {
		return nil // all there; a restart found the whole file on disk
	}
	if t.done > 0 && t.req.Checksum == "" && t.etag == "" {
		// Nothing would tell a resumed unverified file from a splice of
		// two versions: without a checksum, only a strong ETag may carry
		// a resume (a weak one, or Last-Modified alone, may not).
		t.j.log.Info("unverified download without a strong ETag from the mirror: starting again from zero instead of resuming", "bytes_done", t.done)
		if err := t.reset(); err != nil {
			return err
		}
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(t.s.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	client, src, token, err := t.source()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(withCredential(actx, t.j.credential()), http.MethodGet, src, nil)
	if err != nil {
		return fault.New(fault.InvalidRequest, "url %q: %v", redact(src), err)
	}
	req.Header.Set("User-Agent", "cloudimages-nodeagent/"+t.s.cfg.Version)
	req.Header.Set("Accept-Encoding", "identity")
	if t.done > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(t.done, 10)+"-")
		// A peer copy sends no If-Range: it may go on from another peer
		// than the one that served its start, whose validators differ for
		// the same bytes; its checksum, always given, vouches for the
		// whole, and published files never change in place.
		switch {
		case t.req.Peer != nil:
		case t.etag != "":
			req.Header.Set("If-Range", t.etag)
		case t.lastModified != "":
			req.Header.Set("If-Range", t.lastModified)
		}
	}
	applyCredential(req)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return requestError(actx, err, req)
	}
	defer resp.Body.Close()
	if err := t.accept(resp); err != nil || t.complete {
		return err
	}
	return t.stream(actx, cancel, resp.Body, stall)
}

// accept looks at the mirror's answer before any byte is written: status,
// range, validators, size and free space.
func (t *transfer) accept(resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusOK:
		if t.done > 0 {
			t.j.log.Info("mirror sent the whole file instead of the rest (no Range support, or the file changed): restarting from zero", "bytes_done", t.done)
			if err := t.reset(); err != nil {
				return err
			}
		}
		t.total = resp.ContentLength
		t.etag, t.lastModified = strongETag(resp.Header.Get("ETag")), resp.Header.Get("Last-Modified")
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		// The validators must agree: another mirror's range of the same
		// size and ETag continues the data, anything else restarts it.
		et := strongETag(resp.Header.Get("ETag"))
		otherETag := t.req.Peer == nil && t.etag != "" && et != "" && et != t.etag
		if !ok || start != t.done || otherETag || (t.total >= 0 && total != t.total) {
			if err := t.reset(); err != nil {
				return err
			}
			return fault.Retryable(fault.UpstreamError, "mirror sent a range that does not continue the partial data (Content-Range %q, ETag %q): restarting from zero", resp.Header.Get("Content-Range"), resp.Header.Get("ETag"))
		}
		t.total = total
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == t.done {
			t.total, t.complete = total, true
			return nil
		}
		if err := t.reset(); err != nil {
			return err
		}
		return fault.Retryable(fault.UpstreamError, "mirror refused the range from byte %d: restarting from zero", t.done)
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		if p := t.j.peerSource(); p != nil && resp.Request.URL.String() == t.peerURL {
			return refusedByPeer(p, resp.Status)
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return t.refused(resp)
		}
		return fault.New(fault.UpstreamNotFound, "mirror answered %s for %s: check the URL (the image may have been moved or removed)", resp.Status, redact(t.url()))
	default:
		return fault.Retryable(fault.UpstreamError, "mirror answered %s for %s", resp.Status, redact(t.url()))
	}
	if t.req.SizeBytes > 0 && t.total >= 0 && t.total != t.req.SizeBytes {
		return fault.New(fault.NotADiskImage, "mirror serves %d bytes, the image is %d bytes (size_bytes): the file there is truncated or not this image", t.total, t.req.SizeBytes)
	}
	if max := t.s.cfg.MaxImageSize; t.total > max {
		return tooLarge(t.total, max)
	}
	return t.checkSpace()
}

// source is the client, URL and bearer token of the next attempt: the
// mirror in use (no token), or the job's peer (whom the worker may have
// changed since the last attempt) with a client of its own.
func (t *transfer) source() (*http.Client, string, string, error) {
	if t.req.Peer == nil {
		return t.s.upstream, t.m.url(), "", nil
	}
	p := t.j.peerSource()
	if p == nil {
		return nil, "", "", fault.Retryable(fault.UpstreamError, "no token for the peer: the worker sends the request again with one")
	}
	u, err := peerFileURL(*p, t.s.cfg.TLSCert != "")
	if err != nil {
		return nil, "", "", err
	}
	if u != t.peerURL || t.peer == nil {
		pu, _ := url.Parse(u)
		if t.peer != nil {
			t.peer.CloseIdleConnections()
		}
		t.peer, t.peerURL = t.s.peerClient(hostPort(pu)), u
		t.j.log.Info("copying from a peer", "peer", p.String(), "bytes_done", t.done)
	}
	return t.peer, u, p.Token, nil
}

// refused is the error for a mirror that answered 401 or 403: it wants a
// credential, or refused the one sent. The code stays upstream_not_found
// (the file cannot be had there); the message says what to do.
func (t *transfer) refused(resp *http.Response) error {
	u := redact(t.m.url())
	c := t.j.credential()
	if pu, err := url.Parse(t.m.url()); err == nil && c.For(pu) {
		return fault.New(fault.UpstreamNotFound, "mirror answered %s for %s to credential %q: check the credential in the worker's --credentials file (and that it may read this file)", resp.Status, u, c.Name)
	}
	return fault.New(fault.UpstreamNotFound, "mirror answered %s for %s: it wants credentials; name a source credential for its host (\"credential\": NAME, defined in the worker's --credentials file), or check the URL", resp.Status, u)
}

// tooLarge is the error for a file past --max-image-size.
func tooLarge(size, max int64) error {
	return fault.New(fault.TooLarge, "the image is %d bytes or more, past the node's --max-image-size of %d bytes: raise it on the agent if this image is meant", size, max)
}

// checkSpace refuses, before writing, a file larger than the pool's room
// (its free space less the reserve it keeps, --min-free).
func (t *transfer) checkSpace() error {
	size := t.total
	if size < 0 {
		size = t.req.SizeBytes
	}
	if size <= 0 {
		return nil
	}
	room, err := t.j.pool.room(t.s.minFree)
	if err != nil {
		return nil // the write will tell
	}
	if need := size - t.done; need > 0 && need > room {
		return t.s.noRoom(t.j.pool, room, need)
	}
	return nil
}

// noRoom is the error for a pool whose room (free space less its reserve)
// is smaller than what a download still needs to write.
func (s *Server) noRoom(p *pool, room, need int64) error {
	return fault.Retryable(fault.DiskFull, "pool %s has %d bytes of room (free space less the --min-free reserve %s), the image needs %d more: free space in %s or use another pool", p.id, max(room, 0), s.cfg.MinFree, need, p.dir)
}

// requestError classifies a failed request: refused by the URL policy
// (not retryable), or the mirror could not be reached (retryable).
func requestError(ctx context.Context, err error, req *http.Request) error {
	if fe, ok := asForbidden(err); ok {
		return fault.New(fault.URLForbidden, "%s: %s", redact(req.URL.String()), fe.msg)
	}
	if fe, ok := fault.As(err); ok {
		return fe // said by the transport (transport.go): a certificate, the proxy
	}
	if errors.Is(context.Cause(ctx), errStalled) {
		return fault.Retryable(fault.UpstreamError, "mirror %s did not answer in time", req.URL.Host)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fault.Retryable(fault.UpstreamError, "mirror %s did not answer in time: %v", req.URL.Host, unwrapURLError(err))
	}
	return fault.Retryable(fault.UpstreamError, "cannot reach the mirror %s: %v", req.URL.Host, unwrapURLError(err))
}

func readError(ctx context.Context, err error, done int64) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fault.Retryable(fault.UpstreamError, "mirror stopped sending after %d bytes", done)
	}
	return fault.Retryable(fault.UpstreamError, "connection to the mirror lost after %d bytes: %v", done, err)
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// parseContentRange reads "bytes START-END/TOTAL" and "bytes */TOTAL".
func parseContentRange(h string) (start, total int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, false
	}
	total, err := strconv.ParseInt(tot, 10, 64)
	if err != nil || total < 0 {
		return 0, 0, false
	}
	if rng == "*" {
		return -1, total, true
	}
	from, _, found := strings.Cut(rng, "-")
	start, err = strconv.ParseInt(from, 10, 64)
	if !found || err != nil || start < 0 {
		return 0, 0, false
	}
	return start, total, true
}

// strongETag keeps an ETag that If-Range may carry: weak ones may not.
func strongETag(etag string) string {
	if strings.HasPrefix(etag, "W/") {
		return ""
	}
	return etag
}

// redact hides a password in a URL, for messages and logs.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}
