package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

// TestPoolWindowsAndTheWaitForThem: a pool keeps its transfer windows and
// zone; a download may wait (PENDING, with until when and why) before it
// starts and again after it downloaded a while (paused at a window's end),
// and the wait is cleared when it transfers again or ends.
func TestPoolWindowsAndTheWaitForThem(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			w := store.StringList{"22:00-06:00", "12:00-13:00"}
			if err := s.CreatePool(ctx, &store.Pool{ID: "night", Type: "local", TransferWindows: w, TimeZone: "Europe/Berlin"}, []string{"node-1"}); err != nil {
				t.Fatal(err)
			}
			if p, err := s.Pool(ctx, "night"); err != nil || strings.Join(p.TransferWindows, ",") != strings.Join(w, ",") || p.TimeZone != "Europe/Berlin" {
				t.Fatalf("pool night: windows %v zone %q (%v)", p.TransferWindows, p.TimeZone, err)
			}
			if p, err := s.Pool(ctx, "p1"); err != nil || len(p.TransferWindows) != 0 || p.TimeZone != "" {
				t.Fatalf("pool p1: windows %v zone %q (%v), want none", p.TransferWindows, p.TimeZone, err)
			}

			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "a", SourceKey: "k", PoolID: "night", FileName: "f.img"}); err != nil {
				t.Fatal(err)
			}
			until := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC)
			check := func(what, status string, until *time.Time, msg string) {
				t.Helper()
				img, err := s.Image(ctx, "a")
				if err != nil {
					t.Fatal(err)
				}
				okUntil := (until == nil && img.WaitingUntil == nil) || (until != nil && img.WaitingUntil != nil && img.WaitingUntil.Equal(*until))
				if img.Status != status || !okUntil || img.WaitingMessage != msg {
					t.Fatalf("%s: status %s, waiting until %v %q; want %s, %v %q", what, img.Status, img.WaitingUntil, img.WaitingMessage, status, until, msg)
				}
			}
			must := func(tr store.Transition) {
				t.Helper()
				if err := s.Transition(ctx, "a", tr); err != nil {
					t.Fatal(err)
				}
			}
			must(store.ToWaiting{Until: until, Message: "before"})
			check("waiting before the start", store.StatusPending, &until, "before")
			must(store.ToDownloading{NodeID: "node-1", Attempt: 1, BytesDone: 5})
			check("downloading", store.StatusDownloading, nil, "")
			later := until.Add(24 * time.Hour)
			must(store.ToWaiting{Until: later, Message: "paused"})
			check("paused at the window's end", store.StatusPending, &later, "paused")
			if img, _ := s.Image(ctx, "a"); img.BytesDone != 5 || img.NodeID != "node-1" {
				t.Fatalf("paused image lost its progress: %d bytes on %q", img.BytesDone, img.NodeID)
			}
			must(store.ToCancelled{})
			check("cancelled while waiting", store.StatusCancelled, nil, "")
			if err := s.Transition(ctx, "a", store.ToWaiting{Until: until}); !errors.Is(err, store.ErrTransition) {
				t.Fatalf("a cancelled image waits again: %v, want ErrTransition", err)
			}
			// VERIFYING is past the transfer: it cannot wait for a window.
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "b", SourceKey: "k2", PoolID: "night", FileName: "g.img"}); err != nil {
				t.Fatal(err)
			}
			for _, tr := range []store.Transition{store.ToDownloading{NodeID: "node-1", Attempt: 1}, store.ToVerifying{NodeID: "node-1"}} {
				if err := s.Transition(ctx, "b", tr); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Transition(ctx, "b", store.ToWaiting{Until: until}); !errors.Is(err, store.ErrTransition) {
				t.Fatalf("a VERIFYING image waits: %v, want ErrTransition", err)
			}
		})
	}
}
