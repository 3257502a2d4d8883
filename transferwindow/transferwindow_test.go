package transferwindow

import (
	"strings"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestAt(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	ny := mustZone(t, "America/New_York")
	at := func(loc *time.Location, y int, mo time.Month, d, h, mi int) time.Time {
		return time.Date(y, mo, d, h, mi, 0, 0, loc)
	}
	for _, tc := range []struct {
		name    string
		windows []string
		loc     *time.Location
		now     time.Time
		open    bool
		until   time.Time // zero: for ever
	}{
		{"no windows: always open", nil, berlin, at(berlin, 2026, 6, 1, 12, 0), true, time.Time{}},
		{"inside a day window", []string{"09:00-17:00"}, time.UTC, at(time.UTC, 2026, 6, 1, 12, 0), true, at(time.UTC, 2026, 6, 1, 17, 0)},
		{"before a day window", []string{"09:00-17:00"}, time.UTC, at(time.UTC, 2026, 6, 1, 8, 59), false, at(time.UTC, 2026, 6, 1, 9, 0)},
		{"after a day window: tomorrow's", []string{"09:00-17:00"}, time.UTC, at(time.UTC, 2026, 6, 1, 17, 0), false, at(time.UTC, 2026, 6, 2, 9, 0)},
		{"at the start is inside", []string{"09:00-17:00"}, time.UTC, at(time.UTC, 2026, 6, 1, 9, 0), true, at(time.UTC, 2026, 6, 1, 17, 0)},
		{"crossing midnight, evening side", []string{"22:00-06:00"}, berlin, at(berlin, 2026, 6, 1, 23, 30), true, at(berlin, 2026, 6, 2, 6, 0)},
		{"crossing midnight, morning side", []string{"22:00-06:00"}, berlin, at(berlin, 2026, 6, 2, 3, 0), true, at(berlin, 2026, 6, 2, 6, 0)},
		{"crossing midnight, closed by day", []string{"22:00-06:00"}, berlin, at(berlin, 2026, 6, 2, 6, 0), false, at(berlin, 2026, 6, 2, 22, 0)},
		{"several windows: the next one", []string{"22:00-06:00", "12:00-13:00"}, berlin, at(berlin, 2026, 6, 2, 7, 0), false, at(berlin, 2026, 6, 2, 12, 0)},
		{"several windows: inside the second", []string{"22:00-06:00", "12:00-13:00"}, berlin, at(berlin, 2026, 6, 2, 12, 30), true, at(berlin, 2026, 6, 2, 13, 0)},
		{"touching windows are one", []string{"22:00-24:00", "00:00-06:00"}, berlin, at(berlin, 2026, 6, 1, 23, 0), true, at(berlin, 2026, 6, 2, 6, 0)},
		{"overlapping windows are one", []string{"20:00-23:00", "22:00-02:00"}, time.UTC, at(time.UTC, 2026, 6, 1, 21, 0), true, at(time.UTC, 2026, 6, 2, 2, 0)},
		{"24h window: open for ever", []string{"00:00-24:00"}, berlin, at(berlin, 2026, 6, 1, 3, 0), true, time.Time{}},
		{"windows covering the day: open for ever", []string{"00:00-12:00", "12:00-24:00"}, berlin, at(berlin, 2026, 6, 1, 18, 0), true, time.Time{}},
		// Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
		{"spring forward: the night is an hour shorter", []string{"01:00-05:00"}, berlin, at(berlin, 2026, 3, 29, 1, 30), true, time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC)},
		{"spring forward: an edge in the skipped hour moves an hour on", []string{"02:30-04:00"}, berlin, at(berlin, 2026, 3, 29, 1, 0), false, time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},
		// Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET.
		{"fall back: the night is an hour longer", []string{"01:00-05:00"}, berlin, at(berlin, 2026, 10, 25, 1, 30), true, time.Date(2026, 10, 25, 4, 0, 0, 0, time.UTC)},
		{"fall back: closed until the next evening", []string{"22:00-02:00"}, berlin, time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), false, time.Date(2026, 10, 25, 21, 0, 0, 0, time.UTC)},
		// New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
		{"another zone's DST day", []string{"22:00-06:00"}, ny, at(ny, 2026, 3, 7, 23, 0), true, time.Date(2026, 3, 8, 10, 0, 0, 0, time.UTC)},
		{"now given in another zone", []string{"22:00-06:00"}, berlin, time.Date(2026, 6, 1, 20, 30, 0, 0, time.UTC), true, at(berlin, 2026, 6, 2, 6, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.windows, tc.loc.String())
			if err != nil {
				t.Fatal(err)
			}
			got := s.At(tc.now)
			if got.Open != tc.open || !got.Until.Equal(tc.until) {
				t.Fatalf("At(%s) = open %v until %s, want open %v until %s", tc.now, got.Open, got.Until, tc.open, tc.until)
			}
		})
	}
}

// Walking a week minute by minute, the state at each minute agrees with
// the windows read naively, and Until is where the state changes.
func TestAtAgreesWithAMinuteByMinuteWalk(t *testing.T) {
	loc := mustZone(t, "Europe/Berlin")
	s, err := Parse([]string{"22:00-06:00", "12:00-13:30", "13:00-14:00"}, "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	inside := func(tm time.Time) bool {
		l := tm.In(loc)
		m := l.Hour()*60 + l.Minute()
		return m >= 22*60 || m < 6*60 || (m >= 12*60 && m < 14*60)
	}
	start := time.Date(2026, 10, 22, 0, 0, 0, 0, loc) // across the fall-back night
	for tm := start; tm.Before(start.Add(7 * 24 * time.Hour)); tm = tm.Add(time.Minute) {
		st := s.At(tm)
		if st.Open != inside(tm) {
			t.Fatalf("At(%s).Open = %v", tm.In(loc), st.Open)
		}
		if !st.Until.After(tm) || inside(st.Until) == st.Open || inside(st.Until.Add(-time.Minute)) != st.Open {
			t.Fatalf("At(%s) = %+v: Until is not where the state changes", tm.In(loc), st)
		}
	}
}

func TestParseRefusesWhatIsNotAWindowOrAZone(t *testing.T) {
	for _, bad := range []string{"", "22:00", "22-06", "2200-0600", "25:00-06:00", "22:60-06:00", "24:00-06:00", "22:00-24:30",
		"7:00-9:00", "22:00-06:00-08:00", "10:00-10:00", "aa:bb-cc:dd"} {
		_, err := Parse([]string{bad}, "UTC")
		if err == nil {
			t.Errorf("window %q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "HH:MM-HH:MM") && !strings.Contains(err.Error(), "00:00-24:00") {
			t.Errorf("window %q: error %q does not say the format", bad, err)
		}
	}
	for _, bad := range []string{"Mars/Olympus", "Local", "europe/berlin", "+01:00"} {
		_, err := Parse([]string{"22:00-06:00"}, bad)
		if err == nil || !strings.Contains(err.Error(), "IANA") {
			t.Errorf("zone %q: error %v, want one naming IANA zones", bad, err)
		}
	}
	s, err := Parse([]string{" 22:00-06:00", "00:00-24:00"}, "")
	if err != nil || s.Location != time.UTC || strings.Join(s.Strings(), ",") != "22:00-06:00,00:00-24:00" {
		t.Fatalf("Parse = %+v, %v", s, err)
	}
}
