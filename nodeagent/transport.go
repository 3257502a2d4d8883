package nodeagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/egress"
	"github.com/quantix/cloudimages/source"
)

// upstreamOptions is how the agent reaches mirrors.
type upstreamOptions struct {
	// control judges every address dialled (dialControl), and, through a
	// proxy, every target's addresses; nil allows every address.
	control       func(network, address string, c syscall.RawConn) error
	headerTimeout time.Duration
	proxy         *egress.Proxy  // nil: every request goes direct
	roots         *x509.CertPool // nil: the system's roots
	// resolve finds a proxied target's addresses (default resolveTarget;
	// tests give names addresses of their choosing).
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// peer, when set, is the host:port of a peer agent (peer.go): dialled
	// directly whatever control says, and the only address the peer's
	// token is sent to. A peer client keeps no idle connections.
	peer string
}

// newUpstreamClient is the HTTP client for mirrors: the URL policy on
// every address (dialled directly, or, through a proxy, the target's
// before the request goes to the proxy), no transparent gzip (ranges are
// about the bytes on the wire), HTTP/1.1 (one TCP stream is fastest for
// one big file), and a bounded number of redirects, each to http or https
// only.
func newUpstreamClient(o upstreamOptions) *http.Client {
	checked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: o.control}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if o.peer != "" && addr == o.peer {
				return plain.DialContext(ctx, network, addr) // a peer agent on the cluster network
			}
			if o.proxy != nil && o.proxy.IsProxyAddr(addr) {
				return plain.DialContext(ctx, network, addr) // the operator's proxy: exempt
			}
			return checked.DialContext(ctx, network, addr)
		},
		TLSClientConfig:       &tls.Config{RootCAs: o.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: o.headerTimeout,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ReadBufferSize:        256 << 10,
		DisableKeepAlives:     o.peer != "",
	}
	if o.proxy != nil {
		transport.Proxy = func(req *http.Request) (*url.URL, error) {
			if o.peer != "" && hostPort(req.URL) == o.peer {
				return nil, nil
			}
			return proxyFor(req, o)
		}
		transport.OnProxyConnectResponse = proxyConnectResponse
	}
	return &http.Client{
		Transport: &classifying{next: transport, proxy: o.proxy},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return &forbiddenError{fmt.Sprintf("more than %d redirects", maxRedirects)}
			}
			// The address is judged when it is dialled (or handed to a
			// proxy); the rest of the policy (scheme, host, no user or
			// password) here.
			if _, err := source.CheckURL(req.URL.String(), true); err != nil {
				return &forbiddenError{fmt.Sprintf("redirect to %q: %s", req.URL.Redacted(), fault.From(err).Message)}
			}
			applyCredential(req) // a source credential goes to its own host only
			if o.peer != "" && hostPort(req.URL) != o.peer {
				req.Header.Del("Authorization") // a peer's token goes to that peer only
			}
			return nil
		},
	}
}

// proxyFor is the proxy of one request (redirects included), once the
// target passed the address rule: through a proxy the agent never dials
// the target, so it resolves the target's name itself and judges every
// address the name has, before anything is sent to the proxy.
func proxyFor(req *http.Request, o upstreamOptions) (*url.URL, error) {
	p, err := o.proxy.For(req.URL)
	if err != nil || p == nil || o.control == nil {
		return p, err
	}
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[req.URL.Scheme]
	}
	resolve := o.resolve
	if resolve == nil {
		resolve = resolveTarget
	}
	addrs, err := resolve(req.Context(), host)
	if err != nil {
		return nil, err
	}
	pn, _ := strconv.ParseUint(port, 10, 16)
	for _, a := range addrs {
		if err := o.control("tcp", netip.AddrPortFrom(a, uint16(pn)).String(), nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// resolveTarget returns the addresses of a target host: the literal, or
// what the agent's resolver says the name is.
func resolveTarget(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fault.Retryable(fault.UpstreamError, "cannot resolve %s (%v): the agent resolves every name it downloads from, even through a proxy, to hold it to the URL policy; give the node a working DNS resolver", host, err)
	}
	return addrs, nil
}

// proxyConnectResponse turns a proxy's refusal of a CONNECT into an error
// that says it was the proxy, without its password.
func proxyConnectResponse(_ context.Context, proxy *url.URL, req *http.Request, resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusProxyAuthRequired:
		return proxyAuthError(proxy.Redacted())
	case resp.StatusCode >= 500:
		return fault.Retryable(fault.UpstreamError, "the proxy %s could not connect to %s: it answered %s", proxy.Redacted(), req.URL.Host, resp.Status)
	default:
		return fault.New(fault.UpstreamError, "the proxy %s refused to connect to %s: it answered %s; its access rules must allow this mirror", proxy.Redacted(), req.URL.Host, resp.Status)
	}
}

// proxyAuthError is a proxy's 407: the same answer on every try.
func proxyAuthError(shown string) error {
	return fault.New(fault.UpstreamError, "the proxy %s asks for credentials or refused them (407 Proxy Authentication Required): give them in the proxy URL, http://USER:PASSWORD@HOST:PORT (--proxy)", shown)
}

// classifying is the transport with its failures said in the contract's
// terms: a certificate that does not verify, a proxy that cannot be
// reached or that wants credentials.
type classifying struct {
	next  *http.Transport
	proxy *egress.Proxy // nil: direct
}

// proxyShown is the proxy of req for messages, without its password.
func (c *classifying) proxyShown(req *http.Request) string {
	if c.proxy != nil {
		if p, err := c.proxy.For(req.URL); err == nil && p != nil {
			return p.Redacted()
		}
	}
	return "(none)"
}

func (c *classifying) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, c.classify(req, err)
	}
	if resp.StatusCode == http.StatusProxyAuthRequired && c.proxy != nil && req.URL.Scheme == "http" {
		// A forwarded GET: the answer is the proxy's.
		resp.Body.Close()
		return nil, proxyAuthError(c.proxyShown(req))
	}
	return resp, nil
}

func (c *classifying) classify(req *http.Request, err error) error {
	var cve *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	switch {
	case errors.As(err, &cve), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return fault.New(fault.UpstreamError, "the TLS certificate of %s does not verify (%v): if the mirror's certificate is signed by a private CA, give the agent that CA with --ca-file (CLOUDIMAGES_CA_FILE); there is no switch to skip verification", req.URL.Host, certProblem(err))
	case errors.As(err, &op) && op.Op == "proxyconnect":
		return fault.Retryable(fault.UpstreamError, "cannot reach the proxy %s: %v", c.proxyShown(req), op.Err)
	}
	return err
}

// certProblem is the certificate's problem alone, without the URL the
// transport wraps around it.
func certProblem(err error) error {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return cve.Err
	}
	return unwrapURLError(err)
}

// upstreamFor builds the mirrors' client of an agent's configuration, and
// returns the options it was built with (peer clients start from them).
func upstreamFor(cfg Config, log *slog.Logger) (*http.Client, upstreamOptions, error) {
	proxy, err := egress.NewProxy(cfg.Proxy)
	if err != nil {
		return nil, upstreamOptions{}, err
	}
	roots, err := egress.RootCAs(cfg.CAFile)
	if err != nil {
		return nil, upstreamOptions{}, err
	}
	if proxy != nil {
		log.Info("mirrors are reached through a proxy; the agent still resolves and judges every target", "proxy", proxy.String())
	}
	if cfg.CAFile != "" {
		log.Info("mirrors' certificates may also be signed by the CAs of --ca-file", "ca_file", cfg.CAFile)
	}
	o := upstreamOptions{control: dialControl, headerTimeout: cfg.StallTimeout, proxy: proxy, roots: roots}
	if cfg.AllowPrivateNetworks {
		o.control = nil // every address may be dialled
	}
	return newUpstreamClient(o), o, nil
}

// fillFor bounds how long fill waits for more of a slow body before it
// hands on what it has, so progress still moves every fraction of a second.
const fillFor = 200 * time.Millisecond

// fillTo is how much fill gathers before handing a chunk on: 8 TLS
// records, enough to make the per-chunk work rare, small enough that the
// writer gets work while the reader decrypts and hashes the next chunk.
const fillTo = 128 << 10

// fill reads the body into buf until it holds fillTo bytes (or buf is
// full), the body ends, or fillFor has passed: a TLS connection returns
// one record (16 KiB at most) per read, and the work done per chunk (hash
// state, write, free-space check, progress) must not run for every record. Every read that brings bytes
// resets the stall timer; each read is held to the node's bandwidth
// (--max-bandwidth) and the download's own cap, if any.
func (t *transfer) fill(ctx context.Context, body io.Reader, buf []byte, stall *time.Timer) (int, error) {
	limits := t.limiters()
	began := time.Now()
	n := 0
	for n < min(len(buf), fillTo) {
		want := buf[n:]
		for _, l := range limits {
			want = want[:min(len(want), l.Burst())]
		}
		m, err := body.Read(want)
		if m > 0 {
			stall.Reset(t.s.cfg.StallTimeout)
			n += m
			for _, l := range limits {
				if werr := l.WaitN(ctx, m); werr != nil {
					return n, context.Cause(ctx)
				}
			}
			if len(limits) > 0 {
				stall.Reset(t.s.cfg.StallTimeout) // waiting for the limiter is not the mirror stalling
			}
		}
		if err != nil || time.Since(began) >= fillFor {
			return n, err
		}
	}
	return n, nil
}

// limiters are the token buckets a download's reads wait for: the node's
// and the download's own.
func (t *transfer) limiters() []*rate.Limiter {
	if t.limit == nil && t.req.MaxBytesPerSecond > 0 {
		t.limit = newLimiter(t.req.MaxBytesPerSecond)
	}
	var out []*rate.Limiter
	for _, l := range []*rate.Limiter{t.limit, t.s.bandwidth} {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}
