package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Window is a recurring rollout window: it opens at each activation of a cron
// schedule and stays open for Duration. "0 9 * * 1-5 8h" is open 09:00–17:00
// on weekdays; "CRON_TZ=Europe/Paris 0 9 * * 1-5 8h" does that in Paris time.
//
// The cron library only parses here; it is used as a pure function of the
// time it is given, never with its scheduler or the wall clock.
type Window struct {
	Spec     string
	Schedule cron.Schedule
	Duration time.Duration
}

var windowParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseWindow reads "<cron> <duration>".
func ParseWindow(v string) (*Window, error) {
	const allowed = `"<cron> <duration>", e.g. "0 9 * * 1-5 8h" (5-field cron, optional CRON_TZ=<zone> prefix; duration from 1m to 168h)`
	fields := strings.Fields(v)
	if len(fields) < 2 || len(v) > 256 {
		return nil, fmt.Errorf("%s", allowed)
	}
	d, ok := parseDuration(fields[len(fields)-1], time.Minute, 7*24*time.Hour)
	if !ok {
		return nil, fmt.Errorf("bad duration %q: %s", fields[len(fields)-1], allowed)
	}
	spec := strings.Join(fields[:len(fields)-1], " ")
	sched, err := parseCron(spec)
	if err != nil {
		return nil, fmt.Errorf("bad cron %q (%w): %s", spec, err, allowed)
	}
	return &Window{Spec: spec, Schedule: sched, Duration: d}, nil
}

// parseCron guards against the parser's panics on hostile input (it has been
// seen to panic on some malformed time zone names); a bad spec is an error.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unparsable: %v", r)
		}
	}()
	return windowParser.Parse(spec)
}

// Open reports whether now is inside the window, and when the window next
// opens (if closed) or closes (if open).
//
// The window is open when the latest activation at or before now is less than
// Duration ago. Activations are found by stepping Next from now-Duration: the
// first activation strictly after that point, if it is ≤ now, opened a window
// still open (windows are half-open: [start, start+Duration)).
func (w *Window) Open(now time.Time) (bool, time.Time) {
	start := w.Schedule.Next(now.Add(-w.Duration))
	if start.IsZero() {
		return false, time.Time{}
	}
	if !start.After(now) {
		// Several activations may fall in the last Duration; the latest one
		// decides when the window closes.
		last := start
		for next := w.Schedule.Next(last); !next.IsZero() && !next.After(now); next = w.Schedule.Next(last) {
			last = next
		}
		return true, last.Add(w.Duration)
	}
	return false, start
}
