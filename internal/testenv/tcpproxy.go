package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// TCPProxy forwards TCP connections to a target, and can cut them: an
// outage of the server behind it (PostgreSQL restarting, a network
// partition) for everything that connects through it, without touching
// the server, which other tests share.
type TCPProxy struct {
	target string
	l      net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	cuts  int // connections reset or refused while cut
}

// NewTCPProxy listens on a free 127.0.0.1 port and forwards to target
// (host:port) until the test ends.
func NewTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{target: target, l: l, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.closeAll()
	})
	return p
}

// Addr is the proxy's host:port, to connect to instead of the target.
func (p *TCPProxy) Addr() string { return p.l.Addr().String() }

// Cut resets every open connection and refuses (accepts and resets) new
// ones until Restore: what clients see while their server restarts.
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.closeAll()
}

// Restore forwards new connections again.
func (p *TCPProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Cuts returns how many connections were reset or refused while cut: that
// the outage was felt.
func (p *TCPProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

func (p *TCPProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		cut := p.cut
		if cut {
			p.cuts++
		}
		p.mu.Unlock()
		if cut {
			reset(c)
			continue
		}
		go p.forward(c)
	}
}

func (p *TCPProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	if !p.track(client, server) {
		reset(client)
		server.Close()
		return
	}
	defer p.untrack(client, server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err == nil || errors.Is(err, net.ErrClosed) {
			// One side ended: end the other the same way.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// track registers a forwarded pair unless a Cut came in meanwhile.
func (p *TCPProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cuts++
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *TCPProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	for _, c := range conns {
		delete(p.conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *TCPProxy) closeAll() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.cuts += len(conns) / 2
	p.mu.Unlock()
	for _, c := range conns {
		reset(c)
	}
}

// reset closes c with a TCP RST rather than a FIN, as a server process
// that died would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
