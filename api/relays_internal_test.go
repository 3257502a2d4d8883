package api

import (
	"context"
	"testing"
	"time"
)

// drainAsync runs r.drain(ctx) and returns where its result arrives.
func drainAsync(r *relays, ctx context.Context) <-chan int {
	done := make(chan int, 1)
	go func() { done <- r.drain(ctx) }()
	return done
}

// waitDraining waits until r refuses new relays (drain has begun).
func waitDraining(t *testing.T, r *relays) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		draining := r.draining
		r.mu.Unlock()
		if draining {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("drain did not begin")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRelaysDrainWaitsForTheRunningOnes(t *testing.T) {
	r := newRelays()
	if !r.begin() || !r.begin() {
		t.Fatal("begin refused a relay before any drain")
	}
	done := drainAsync(r, context.Background())
	waitDraining(t, r)
	if r.begin() {
		t.Fatal("begin accepted a relay while the server drains: it would be hijacked, then cut")
	}
	r.end(false)
	select {
	case n := <-done:
		t.Fatalf("drain returned (%d cut) with a relay still running", n)
	default:
	}
	r.end(false)
	if n := <-done; n != 0 {
		t.Fatalf("drain says %d relays were cut; both ended by themselves", n)
	}
	if r.cut.Err() != nil {
		t.Fatal("drain cut the relays though they ended before its deadline")
	}
}

func TestRelaysDrainCutsTheRunningOnesAtItsDeadline(t *testing.T) {
	r := newRelays()
	r.begin()
	r.begin()
	r.begin()
	r.end(false) // one ends before the shutdown
	ctx, cancel := context.WithCancel(context.Background())
	done := drainAsync(r, ctx)
	waitDraining(t, r)
	cancel() // the shutdown timeout
	<-r.cut.Done()
	select {
	case n := <-done:
		t.Fatalf("drain returned (%d cut) before the cut relays' handlers did", n)
	default:
	}
	r.end(true)
	r.end(true)
	if n := <-done; n != 2 {
		t.Fatalf("drain says %d relays were cut, want 2", n)
	}
}

func TestRelaysDrainWithNoneRunningReturnsAtOnce(t *testing.T) {
	r := newRelays()
	r.begin()
	r.end(false)
	if n := r.drain(context.Background()); n != 0 {
		t.Fatalf("drain with no relay running says %d were cut", n)
	}
	if r.begin() {
		t.Fatal("begin accepted a relay after the drain")
	}
}
