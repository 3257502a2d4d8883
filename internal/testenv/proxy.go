package testenv

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// ProxyOptions configures a Proxy. Zero values: no credentials asked, and
// every request goes where it says.
type ProxyOptions struct {
	// User and Password, when set, are the basic credentials every request
	// must carry in Proxy-Authorization; without them it gets 407.
	User, Password string
	// Route, a host:port, is where every tunnel and forwarded request goes
	// whatever its target: tests name a public address as the target (the
	// agent judges it public) and reach a mirror on 127.0.0.1.
	Route string
}

// PublicIP is a public address tests name as a mirror's host behind a
// Proxy with a Route: the agent's URL policy accepts it, and nothing ever
// dials it (the proxy routes it to the test's mirror).
const PublicIP = "93.184.215.14"

// Proxy is a small HTTP forward proxy for tests, as on a real network's
// edge: CONNECT opens a tunnel (https), a request with an absolute URI is
// forwarded (http). It counts what it is asked and stops when the test
// ends.
type Proxy struct {
	srv  *httptest.Server
	opts ProxyOptions
	fwd  *http.Transport

	mu       sync.Mutex
	requests []string // "CONNECT host:port" or "GET http://…", as asked
	refused  int      // answered 407
}

// NewProxy starts a proxy on 127.0.0.1.
func NewProxy(t testing.TB, opts ProxyOptions) *Proxy {
	t.Helper()
	p := &Proxy{opts: opts}
	p.fwd = &http.Transport{Proxy: nil, DisableCompression: true, DialContext: p.dial}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.fwd.CloseIdleConnections()
	})
	return p
}

// URL is the proxy's URL, with the credentials when it asks for some:
// what --proxy takes.
func (p *Proxy) URL() string {
	u, _ := url.Parse(p.srv.URL)
	if p.opts.User != "" {
		u.User = url.UserPassword(p.opts.User, p.opts.Password)
	}
	return u.String()
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.srv.Listener.Addr().String() }

// Requests returns what the proxy was asked, in order ("CONNECT
// host:port", "GET http://host/path"), refused ones included.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Refused returns how many requests got 407 for want of credentials.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	asked := r.Method + " " + r.RequestURI
	p.mu.Lock()
	p.requests = append(p.requests, asked)
	p.mu.Unlock()
	if !p.authorized(r) {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		w.Header().Set("Proxy-Authenticate", `Basic realm="test proxy"`)
		http.Error(w, "proxy credentials wanted", http.StatusProxyAuthRequired)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		p.tunnel(w, r)
	case r.URL.IsAbs():
		p.forward(w, r)
	default:
		http.Error(w, "a proxy takes CONNECT or an absolute URI", http.StatusBadRequest)
	}
}

func (p *Proxy) authorized(r *http.Request) bool {
	if p.opts.User == "" {
		return true
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(p.opts.User+":"+p.opts.Password))
	return r.Header.Get("Proxy-Authorization") == want
}

// dial connects to a target, or to Route when set.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.opts.Route != "" {
		addr = p.opts.Route
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(ctx, network, addr)
}

// tunnel answers a CONNECT: 200, then bytes both ways until either side
// closes.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	target, err := p.dial(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer target.Close()
	client, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(target, buf) // what the client sent, buffered or not
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, target)
		done <- struct{}{}
	}()
	<-done
}

// forward sends an absolute-URI request on, without the proxy's own
// headers, and copies the answer back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	resp, err := p.fwd.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Close stops the proxy now (tests of a proxy that is not there).
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}
