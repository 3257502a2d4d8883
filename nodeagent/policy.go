package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/quantix/cloudimages/fault"
)

// maxRedirects bounds the redirects of one request: mirrors redirect once
// or twice (to a CDN); a longer chain is a loop or a trap.
const maxRedirects = 5

// forbiddenError is an address the URL policy refuses; it surfaces from
// deep inside the HTTP client, so it has its own type to be found again.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }

// blockedPrefixes are the ranges that netip's predicates do not cover:
// carrier-grade NAT, "this network", IETF protocol assignments, benchmark
// testing, reserved, and broadcast.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// forbiddenAddr says why an address may not be dialled, or "" when it may:
// loopback, private (RFC 1918, IPv6 ULA), link-local (cloud metadata at
// 169.254.169.254 among them), multicast, unspecified and reserved ranges.
func forbiddenAddr(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return forbiddenAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate():
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata services live there)"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a.IsUnspecified():
		return "an unspecified address"
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return "a reserved or carrier-grade NAT address"
		}
	}
	return ""
}

// dialControl checks the address actually dialled — after DNS, for every
// connection, redirects included — so a name that resolves (or later
// re-resolves) to an internal address does not get through.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &forbiddenError{fmt.Sprintf("cannot check address %q: %v", address, err)}
	}
	if why := forbiddenAddr(ap.Addr()); why != "" {
		return &forbiddenError{fmt.Sprintf("%s is %s; the agent only downloads from public addresses unless started with --allow-private-networks", ap.Addr(), why)}
	}
	return nil
}

// checkURL is the policy applied before anything is dialled: http or https,
// a host, and for a literal address a public one. Names ("localhost"
// included) are judged by the address they resolve to, at dial time.
func checkURL(raw string, allowPrivate bool) (*url.URL, error) {
	if len(raw) > 8192 {
		return nil, fault.New(fault.InvalidRequest, "url is %d characters long; at most 8192", len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fault.New(fault.InvalidRequest, "url %q does not parse: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fault.New(fault.URLForbidden, "url %q: only http and https URLs can be downloaded", u.Redacted())
	}
	host := u.Hostname()
	if host == "" {
		return nil, fault.New(fault.InvalidRequest, "url %q has no host", u.Redacted())
	}
	if allowPrivate {
		return u, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if why := forbiddenAddr(a); why != "" {
			return nil, fault.New(fault.URLForbidden, "url %q: %s is %s; the agent only downloads from public addresses unless started with --allow-private-networks", u.Redacted(), a, why)
		}
	}
	return u, nil
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
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return &forbiddenError{fmt.Sprintf("redirect to %q: only http and https URLs can be downloaded", req.URL.Redacted())}
			}
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
