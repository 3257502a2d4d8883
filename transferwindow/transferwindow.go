// Package transferwindow is the clock arithmetic of transfer windows: the
// daily times ("22:00-06:00") in a time zone during which a pool's
// downloads may use the network. It is pure — no clock of its own — so
// the workflow can ask it with workflow time, and its tests can ask it
// about any night, DST changes included.
package transferwindow

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Format says how a window is written, for error messages.
const Format = `HH:MM-HH:MM in 24-hour time, e.g. "22:00-06:00" (a window may cross midnight; "00:00-24:00" is the whole day)`

const day = 24 * 60

// Window is one daily window, in minutes after local midnight. End is at
// most 24*60; an End not after Start means the window crosses midnight.
type Window struct {
	Start, End int
}

// ParseWindow reads "HH:MM-HH:MM".
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, fmt.Errorf("transfer window %q: want %s", s, Format)
	}
	start, err1 := parseClock(from, false)
	end, err2 := parseClock(to, true)
	if err1 != nil || err2 != nil {
		return Window{}, fmt.Errorf("transfer window %q: want %s", s, Format)
	}
	if start == end {
		return Window{}, fmt.Errorf("transfer window %q starts and ends at the same time: write the whole day as \"00:00-24:00\"", s)
	}
	return Window{Start: start, End: end}, nil
}

// parseClock reads "HH:MM"; 24:00 only when it may end a window.
func parseClock(s string, end bool) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("bad time")
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil {
		return 0, err
	}
	switch {
	case m < 0 || m > 59 || h < 0 || h > 24:
		return 0, fmt.Errorf("bad time")
	case h == 24 && (m != 0 || !end):
		return 0, fmt.Errorf("bad time")
	}
	return h*60 + m, nil
}

// String writes the window as it is parsed.
func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// crossesMidnight reports whether the window ends on the next day.
func (w Window) crossesMidnight() bool { return w.End <= w.Start }

// Schedule is a set of daily windows in one time zone. The zero Schedule
// has no windows: transfers may run at any time.
type Schedule struct {
	Windows  []Window
	Location *time.Location
}

// LoadZone reads an IANA time zone name; "" is UTC. "Local" is refused:
// it would mean each worker's own zone.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, fmt.Errorf("time zone %q: name the zone, as an IANA name such as \"Europe/Berlin\" or \"UTC\"", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: want an IANA time zone name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"", name)
	}
	return loc, nil
}

// Parse reads windows ("22:00-06:00", …) and the IANA zone they are in
// ("" is UTC). No windows is the zero Schedule.
func Parse(windows []string, zone string) (Schedule, error) {
	loc, err := LoadZone(zone)
	if err != nil {
		return Schedule{}, err
	}
	if len(windows) == 0 {
		return Schedule{}, nil
	}
	s := Schedule{Location: loc}
	for _, text := range windows {
		w, err := ParseWindow(text)
		if err != nil {
			return Schedule{}, err
		}
		s.Windows = append(s.Windows, w)
	}
	return s, nil
}

// Always reports whether the schedule has no windows: always open.
func (s Schedule) Always() bool { return len(s.Windows) == 0 }

// Strings writes the windows as they are parsed.
func (s Schedule) Strings() []string {
	out := make([]string, 0, len(s.Windows))
	for _, w := range s.Windows {
		out = append(out, w.String())
	}
	return out
}

// State is where a moment stands in a schedule: inside a window (Open)
// or not, and Until when that lasts. A zero Until means for ever: no
// windows, or windows that together cover every minute.
type State struct {
	Open  bool      `json:"open"`
	Until time.Time `json:"until"`
}

// At says where now stands: open until the end of the window it is in
// (windows that overlap or touch count as one), or closed until the next
// window starts. Windows are wall-clock times of their zone, so on the
// night of a DST change a window is an hour shorter or longer; an edge
// that falls in the skipped hour moves as time.Date moves it (an hour on).
func (s Schedule) At(now time.Time) State {
	if s.Always() {
		return State{Open: true}
	}
	spans := s.spans(now)
	last := spans[len(spans)-1].end
	for _, sp := range spans {
		switch {
		case now.Before(sp.start):
			return State{Open: false, Until: sp.start}
		case now.Before(sp.end):
			if sp.end.Equal(last) {
				return State{Open: true} // open to the edge of the horizon: the windows cover every day
			}
			return State{Open: true, Until: sp.end}
		}
	}
	return State{Open: true} // not reached: the horizon runs days past now
}

type span struct{ start, end time.Time }

// spans are the windows from the day before now's to a week after, as
// instants, sorted and merged where they overlap or touch.
func (s Schedule) spans(now time.Time) []span {
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := now.In(loc).Date()
	var all []span
	for k := -1; k <= 7; k++ {
		for _, w := range s.Windows {
			endDay := d + k
			if w.crossesMidnight() {
				endDay++
			}
			all = append(all, span{
				start: time.Date(y, m, d+k, w.Start/60, w.Start%60, 0, 0, loc),
				end:   time.Date(y, m, endDay, w.End/60, w.End%60, 0, 0, loc),
			})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start.Before(all[j].start) })
	merged := all[:1]
	for _, sp := range all[1:] {
		cur := &merged[len(merged)-1]
		if !sp.start.After(cur.end) {
			if sp.end.After(cur.end) {
				cur.end = sp.end
			}
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}
