package rollout

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

func TestProbesBetweenStepDecisionsFollowTheCanarysScrapes(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// Scraped at .300 every second: probes belong at .550 (margin 250 ms).
	aligned := Observed{ScrapedAt: ms(300), ScrapeInterval: time.Second}
	for _, c := range []struct {
		name   string
		o      Observed
		last   time.Time
		period time.Duration
		want   time.Time
	}{
		{"phase unknown: a period later", Observed{ScrapeInterval: time.Second}, ms(900), time.Second, ms(1900)},
		{"never probed: a period after zero", aligned, time.Time{}, time.Second, time.Time{}.Add(time.Second)},
		{"on the phase: the next scrape", aligned, ms(550), time.Second, ms(1550)},
		{"a little late: keeps the phase", aligned, ms(700), time.Second, ms(1550)},
		{"off the phase: the nearest scrape, early by less than half", aligned, ms(900), time.Second, ms(1550)},
		{"off the phase: the nearest scrape, late by less than half", aligned, ms(100), time.Second, ms(1550)},
		{"longer period: the scrape nearest to it", aligned, ms(550), 10 * time.Second, ms(10550)},
		{"period under the interval: the next scrape, not the same one", aligned, ms(550), 300 * time.Millisecond, ms(1550)},
		{"scraped long ago: the phase holds", Observed{ScrapedAt: ms(300 - 3600*1000), ScrapeInterval: time.Second}, ms(560), time.Second, ms(1550)},
		{"10 s interval: half a second after the scrape", Observed{ScrapedAt: ms(4000), ScrapeInterval: 10 * time.Second}, ms(4500), 10 * time.Second, ms(14500)},
	} {
		if got := nextProbe(c.o, c.last, c.period); !got.Equal(c.want) {
			t.Errorf("%s: next probe at %s, want %s", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
}

// In a whole step, with the phase known, every probe after the first runs
// just after a scrape of the canary, and the step still ends at its due time.
func TestAStepsProbesRunJustAfterTheCanarysScrapes(t *testing.T) {
	w := atStep1Probing(t)
	w.o.ScrapedAt = w.now.Add(-730 * time.Millisecond) // scrapes at .270 past each of w's seconds
	var probes []time.Time
	start := *w.status().StepStartedAt
	inner := w.verdict
	w.verdict = func(tg analysis.Target) *analysis.Result {
		probes = append(probes, w.now)
		return inner(tg)
	}
	due := start.Add(10 * time.Second)
	for end := w.now.Add(15 * time.Second); w.status().Step == 1 && w.now.Before(end); w.now = w.now.Add(10 * time.Millisecond) {
		n := len(probes)
		dec := w.tick()
		if len(probes) == n || w.status().Step != 1 {
			continue
		}
		// The controller is woken for the next probe, on the phase, or for
		// the due time, whichever is first.
		wake := w.now.Add(dec.RequeueAfter)
		if phase := wake.Sub(w.o.ScrapedAt) % time.Second; phase != 250*time.Millisecond && !wake.Equal(due) {
			t.Errorf("after the probe at %s: woken at %s, %s after a scrape (due at %s)", w.now.Sub(start), wake.Sub(start), phase, due.Sub(start))
		}
	}
	if len(probes) < 8 {
		t.Fatalf("%d probes in a 10 s step with a 1 s period", len(probes))
	}
	for _, p := range probes[1 : len(probes)-1] {
		if phase := p.Sub(w.o.ScrapedAt) % time.Second; phase < 250*time.Millisecond || phase > 270*time.Millisecond {
			t.Errorf("probe at %s is %s after a scrape, want 250 ms (+ one tick)", p.Sub(start), phase)
		}
	}
	if w.lastChange.Before(due) || w.lastChange.Sub(due) > 20*time.Millisecond {
		t.Errorf("step 2 applied %s after its due time", w.lastChange.Sub(due))
	}
}

// A probe made off the phase (the first of a step, or after a restart) asks
// to be woken on the phase, not a period later.
func TestAProbeOffThePhaseWakesOnIt(t *testing.T) {
	w := atStep1Probing(t)
	w.now = w.now.Add(3 * time.Second)
	w.o.ScrapedAt = w.now.Add(-600 * time.Millisecond) // probes belong at 650 ms from now, then every second
	w.o.LastProbe = time.Time{}                        // a restarted controller
	checks := w.checks
	dec := w.tick()
	if w.checks != checks+1 {
		t.Fatal("no probe")
	}
	if dec.RequeueAfter != 650*time.Millisecond {
		t.Errorf("woken %s after an off-phase probe, want 650 ms (the probe time nearest to a period later)", dec.RequeueAfter)
	}
}

// A status PlanCheck cannot plan from (here one edited by hand, without
// startedAt) gets no probe; with the phase known, the wake-up must still be
// a period away, not a spin.
func TestNoProbePlannedNeverSpins(t *testing.T) {
	w := atStep1Probing(t)
	st := w.status()
	st.StartedAt = nil
	st.LastCheck = nil
	w.o.Annotations[AnnotationStatus] = st.Encode()
	w.now = w.now.Add(3 * time.Second)
	o := w.o
	o.Now, o.LastProbe, o.ScrapedAt = w.now, w.now.Add(-2*time.Second), w.now.Add(-100*time.Millisecond)
	if _, ok := PlanCheck(o); ok {
		t.Fatal("a probe was planned from a status without startedAt")
	}
	if d := Decide(o); d.RequeueAfter < 100*time.Millisecond {
		t.Fatalf("woken after %s with no probe planned", d.RequeueAfter)
	}
}

// atStep1Probing is a rollout at step 1, its weight in place, probed every
// second with a one-second scrape interval (the phase not yet known).
func atStep1Probing(t *testing.T) *world {
	t.Helper()
	w := adopted(t, nil)
	w.o.AnalysisPeriod = time.Second
	w.o.ScrapeInterval = time.Second
	w.bump("r2")
	w.run(100*time.Millisecond, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	return w
}
