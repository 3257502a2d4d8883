package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
)

// maxRedirects bounds the redirects of one request: mirrors redirect once
// or twice (to a CDN); a longer chain is a loop or a trap.
const maxRedirects = 5

// forbiddenError is an address the URL policy refuses; it surfaces from
// deep inside the HTTP client, so it has its own type to be found again.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }

// dialControl is the URL policy's address rule (source.ForbiddenAddr)
// applied to the address actually dialled — after DNS, for every
// connection, redirects included — so a name that resolves (or later
// re-resolves) to an internal address does not get through.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &forbiddenError{fmt.Sprintf("cannot check address %q: %v", address, err)}
	}
	if why := source.ForbiddenAddr(ap.Addr()); why != "" {
		return &forbiddenError{fmt.Sprintf("%s is %s; %s", ap.Addr(), why, source.PublicOnly)}
	}
	return nil
}

// newUpstreamClient is the HTTP client for mirrors: the URL policy at
// connect time, no proxy from the environment (it would be dialled instead
// of the mirror, past the policy), no transparent gzip (ranges are about
// the bytes on the wire), HTTP/1.1 (one TCP stream is fastest for one big
// file), and a bounded number of redirects, each to http or https only.
// control is dialControl, or nil to allow every address.
func newUpstreamClient(control func(network, address string, c syscall.RawConn) error, headerTimeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: control}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ReadBufferSize:        256 << 10,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return &forbiddenError{fmt.Sprintf("more than %d redirects", maxRedirects)}
			}
			// The address is judged when it is dialled; the rest of the
			// policy (scheme, host, no user or password) here.
			if _, err := source.CheckURL(req.URL.String(), true); err != nil {
				return &forbiddenError{fmt.Sprintf("redirect to %q: %s", req.URL.Redacted(), fault.From(err).Message)}
			}
			applyCredential(req) // a source credential goes to its own host only
			return nil
		},
	}
}

// asForbidden finds a policy refusal inside an error from the HTTP client.
func asForbidden(err error) (*forbiddenError, bool) {
	var fe *forbiddenError
	ok := errors.As(err, &fe)
	return fe, ok
}
