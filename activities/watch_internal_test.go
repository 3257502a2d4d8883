package activities

import (
	"testing"
	"time"
)

func TestSignalIntervalKeepsLongDownloadsHistorySmall(t *testing.T) {
	w := &watch{s: Settings{}.WithDefaults(), began: time.Unix(0, 0)}
	signals := 0
	for now, last := w.began, w.began; now.Before(w.began.Add(time.Hour)); now = now.Add(time.Second) {
		if now.Sub(last) >= w.signalInterval(now) {
			signals++
			last = now
		}
	}
	// A signal is about four history events.
	if signals < 60 || signals > 250 {
		t.Fatalf("%d progress signals in an hour, want some, but only a few hundred at most", signals)
	}
	if got := w.signalInterval(w.began.Add(10 * time.Second)); got != 5*time.Second {
		t.Fatalf("interval early on = %s, want the 5s default", got)
	}
	if got := w.signalInterval(w.began.Add(10 * time.Hour)); got != time.Minute {
		t.Fatalf("interval after hours = %s, want the 1m cap", got)
	}
}
