package api

import (
	"context"
	"sync"
)

// relays counts the PATCH bodies relayed on hijacked connections
// (hijackBody). http.Server.Shutdown forgets a connection once it is
// hijacked, so without this a graceful shutdown would exit in the middle
// of them and reset their uploaders.
type relays struct {
	mu       sync.Mutex
	running  int
	cutN     int
	draining bool          // no relay starts any more
	idle     chan struct{} // closed once draining and none runs
	cut      context.Context
	cutAll   context.CancelFunc
}

func newRelays() *relays {
	cut, cutAll := context.WithCancel(context.Background())
	return &relays{idle: make(chan struct{}), cut: cut, cutAll: cutAll}
}

// begin counts a relay that is about to start. It is false once the
// server drains: the PATCH is then streamed through the HTTP server,
// whose Shutdown waits for it, rather than hijacked and then cut.
func (r *relays) begin() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return false
	}
	r.running++
	return true
}

// end is a relay's handler returning, its answer sent; cut says the
// relay was cut before its body ended.
func (r *relays) end(cut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if cut {
		r.cutN++
	}
	if r.draining && r.running == 0 {
		close(r.idle)
	}
}

// stopNew makes begin refuse every relay from now on.
func (r *relays) stopNew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return
	}
	r.draining = true
	if r.running == 0 {
		close(r.idle)
	}
}

// drain stops new relays and waits for those running to end; when ctx
// ends first it cuts them (their uploaders resume from the offset the
// node kept) and waits for their handlers to answer. It returns how many
// it cut.
func (r *relays) drain(ctx context.Context) int {
	r.stopNew()
	select {
	case <-r.idle:
		return 0
	case <-ctx.Done():
	}
	r.cutAll()
	<-r.idle
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cutN
}
