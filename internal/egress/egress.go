// Package egress is how cloudimages reaches mirrors and vendors from a
// real network: through an HTTP proxy (--proxy, or the standard
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY variables) and trusting a private
// CA (--ca-file) besides the system's roots. The node agents use it for
// images, the worker for checksum files. The URL policy stays with its
// callers (the agent judges the target of every proxied request itself).
package egress

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// ProxyEnv is the variable of --proxy. Unlike HTTPS_PROXY and HTTP_PROXY
// it is cloudimages' own, so it reaches the agents without every other
// program on the node going through the proxy too.
const ProxyEnv = "CLOUDIMAGES_PROXY"

// Proxy chooses the proxy of each request: the one --proxy names, or
// those of the standard variables, with NO_PROXY's exceptions either way.
// Targets on loopback ("localhost", 127.0.0.1, ::1) never go through it.
type Proxy struct {
	fn    func(*url.URL) (*url.URL, error)
	addrs map[string]bool // host:port of each proxy, as the transport dials it
	shown string          // for logs: the proxies without their passwords
}

// NewProxy returns the proxy setting of flag (a URL such as
// http://user:pass@proxy:3128; "" for none), or, when flag is empty, of
// the environment's HTTPS_PROXY, HTTP_PROXY and NO_PROXY (and their
// lower-case forms). It returns nil when no proxy is set. Errors never
// show a password.
func NewProxy(flag string) (*Proxy, error) {
	cfg := httpproxy.FromEnvironment()
	from := "HTTPS_PROXY/HTTP_PROXY"
	if flag != "" {
		cfg.HTTPProxy, cfg.HTTPSProxy, from = flag, flag, "--proxy"
	}
	if cfg.HTTPProxy == "" && cfg.HTTPSProxy == "" {
		return nil, nil
	}
	p := &Proxy{fn: cfg.ProxyFunc(), addrs: map[string]bool{}}
	var shown []string
	for _, raw := range []string{cfg.HTTPSProxy, cfg.HTTPProxy} {
		if raw == "" {
			continue
		}
		u, err := parseProxy(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		if addr := dialAddr(u); !p.addrs[addr] {
			p.addrs[addr] = true
			shown = append(shown, u.Redacted())
		}
	}
	p.shown = strings.Join(shown, ", ")
	if cfg.NoProxy != "" {
		p.shown += " (NO_PROXY " + cfg.NoProxy + ")"
	}
	return p, nil
}

// parseProxy reads a proxy URL as the transport will: a bare host:port
// is an http proxy. Only http and https proxies are taken: the policy
// needs to see each target before the proxy does.
func parseProxy(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("proxy %q is not a URL: want http://HOST:PORT, optionally with USER:PASSWORD@", Redact(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("proxy %s: only http:// and https:// proxies are supported, not %s://", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("proxy %s has no host: want http://HOST:PORT", u.Redacted())
	}
	return u, nil
}

// dialAddr is the host:port the transport dials for a proxy URL.
func dialAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// For returns the proxy for a request to target, or nil to go direct.
func (p *Proxy) For(target *url.URL) (*url.URL, error) { return p.fn(target) }

// IsProxyAddr reports whether addr (host:port, as dialled) is one of the
// proxies: the operator chose it, so the address rule does not apply.
func (p *Proxy) IsProxyAddr(addr string) bool { return p.addrs[addr] }

// String describes the proxies for logs, passwords replaced by "xxxxx".
func (p *Proxy) String() string { return p.shown }

// Redact hides the password of a URL such as a proxy's, for --help, logs
// and errors; a value that does not parse is hidden whole when it might
// hold one.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Redacted()
	}
	if u, err := url.Parse("http://" + raw); err == nil && u.Host != "" && u.User != nil {
		return strings.TrimPrefix(u.Redacted(), "http://")
	}
	if strings.Contains(raw, "@") {
		return "(hidden: it may hold a password)"
	}
	return raw
}

// CAEnv is the variable of --ca-file.
const CAEnv = "CLOUDIMAGES_CA_FILE"

// RootCAs returns the system's roots plus the PEM certificates in file,
// or nil (the system's roots alone) when file is "".
func RootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system roots here: the bundle alone
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate: give the CA certificate (BEGIN CERTIFICATE) that signed your mirrors' certificates", file)
	}
	return pool, nil
}

// Client is an HTTP client for small files (vendors' checksum files)
// through proxy (nil: direct) trusting roots (nil: the system's). It
// applies no address rule: the worker fetches only what the catalog names.
func Client(proxy *Proxy, roots *x509.CertPool, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	if proxy != nil {
		t.Proxy = func(req *http.Request) (*url.URL, error) { return proxy.For(req.URL) }
	}
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: timeout}
}
