package audit

import (
	"reflect"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// at is a time seconds after t0.
func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// split is a sample at sec with the canary at weight w (milli) and both
// backends ready unless listed in empty.
func split(sec float64, w int64, empty ...string) Sample {
	s := Sample{At: at(sec), Split: true, Weights: map[string]int64{"web-stable": 1000 - w, "web-canary": w}, Empty: map[string]bool{}}
	for _, e := range empty {
		s.Empty[e] = true
	}
	return s
}

// status is a sample without a split carrying a status annotation.
func status(sec float64, phase rollout.Phase, rev string, step int, stepSec float64, mods ...func(*rollout.Status)) Sample {
	started, stepAt := at(0), at(stepSec)
	st := rollout.Status{Phase: phase, Revision: rev, Step: step, StartedAt: &started, StepStartedAt: &stepAt}
	for _, m := range mods {
		m(&st)
	}
	return Sample{At: at(sec), Status: &st}
}

func failedRev(r string) func(*rollout.Status) {
	return func(s *rollout.Status) { s.FailedRevision = r }
}
func lastCmd(c string) func(*rollout.Status) { return func(s *rollout.Status) { s.LastCommand = c } }

func TestRules(t *testing.T) {
	for name, tc := range map[string]struct {
		samples []Sample
		want    []string // rule names, in order
	}{
		"a clean walk through the steps and back to stable breaks nothing": {
			samples: []Sample{{At: at(0)}, split(1, 0), split(2, 100), split(7.1, 200), split(12.2, 500), split(17.3, 1000), split(18, 0)},
		},
		"weight on a canary without endpoints is traffic to the void": {
			samples: []Sample{split(1, 0, "web-canary"), split(2, 100, "web-canary")},
			want:    []string{"void"},
		},
		"an empty backend with no weight is fine": {
			samples: []Sample{split(1, 0, "web-canary"), split(2, 1000, "web-stable")},
		},
		"weights that do not sum to 1000m are caught": {
			samples: []Sample{{At: at(1), Split: true, Weights: map[string]int64{"web-stable": 900, "web-canary": 200}}},
			want:    []string{"sum"},
		},
		"a step up sooner than the interval is early": {
			samples: []Sample{split(0, 0), split(1, 100), split(3, 200)},
			want:    []string{"early-step"},
		},
		"a late sample cannot invent a short step": {
			// 100m was in place from after 0.5 s; 200m was first seen at
			// 5.7 s: the step may have lasted 5.2 s, so it is not accused,
			// though the two sightings are only 4.7 s apart.
			samples: []Sample{split(0.5, 0), split(1, 100), split(5.6, 100), split(5.7, 200)},
		},
		"the last step to 1000m (promotion) is not paced by the interval": {
			samples: []Sample{split(1, 100), split(6.1, 500), split(6.5, 1000)},
		},
		"a canary weight that falls without reaching stable repeats a step": {
			samples: []Sample{split(1, 100), split(6.1, 200), split(7, 100)},
			want:    []string{"step-repeated"},
		},
		"from all traffic on the canary (stable had no endpoint) back to the step's weight is fine": {
			samples: []Sample{split(1, 100), split(6.1, 200), split(7, 1000), split(9, 200), split(14.2, 500)},
		},
		"a rollback to 0 and a new rollout from 100m is fine": {
			samples: []Sample{split(1, 100), split(6.1, 200), split(7, 0), split(8, 100)},
		},
		"status.step going back within one rollout is a repeated step": {
			samples: []Sample{status(1, rollout.PhaseProgressing, "r2", 2, 0.5), status(2, rollout.PhaseProgressing, "r2", 1, 0.5)},
			want:    []string{"step-repeated"},
		},
		"status.step jumping by two is a skipped step": {
			samples: []Sample{status(1, rollout.PhaseProgressing, "r2", 1, 0.5), status(1.1, rollout.PhaseProgressing, "r2", 3, 1.05)},
			want:    []string{"step-skipped"},
		},
		"a jump after the auditor was blind longer than an interval is not accused": {
			samples: []Sample{status(1, rollout.PhaseProgressing, "r2", 1, 0.5), status(20, rollout.PhaseProgressing, "r2", 3, 15)},
		},
		"a status step sooner than the interval after the previous is early": {
			samples: []Sample{status(1, rollout.PhaseProgressing, "r2", 1, 1), status(4, rollout.PhaseProgressing, "r2", 2, 4)},
			want:    []string{"early-step"},
		},
		"a new rollout (new start time) starts its steps afresh": {
			samples: []Sample{
				status(1, rollout.PhaseProgressing, "r2", 2, 1),
				status(2, rollout.PhaseProgressing, "r3", 1, 2, func(s *rollout.Status) { t := at(2); s.StartedAt = &t }),
			},
		},
		"a failed revision promoted without a command is caught once": {
			samples: []Sample{
				status(1, rollout.PhaseFailed, "r2", 0, 0, failedRev("r2")),
				status(2, rollout.PhasePromoting, "r2", 0, 0),
				status(3, rollout.PhaseSucceeded, "r2", 0, 0),
			},
			want: []string{"failed-promoted"},
		},
		"a retry releases the failed revision": {
			samples: []Sample{
				status(1, rollout.PhaseFailed, "r2", 0, 0, failedRev("r2")),
				status(2, rollout.PhaseProgressing, "r2", 1, 2, lastCmd("retry: retrying revision r2")),
				status(30, rollout.PhaseSucceeded, "r2", 0, 0, lastCmd("retry: retrying revision r2")),
			},
		},
		"a stale retry outcome does not release a second failure": {
			samples: []Sample{
				status(1, rollout.PhaseFailed, "r2", 0, 0, failedRev("r2"), lastCmd("retry: retrying revision r2")),
				status(2, rollout.PhaseSucceeded, "r2", 0, 0, failedRev("r2"), lastCmd("retry: retrying revision r2")),
			},
			want: []string{"failed-promoted"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewRules("web-canary", 1000, 5*time.Second, 200*time.Millisecond)
			for _, s := range tc.samples {
				r.Observe(s)
			}
			var got []string
			for _, v := range r.Violations() {
				got = append(got, v.Rule)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("violations %v, want %v: %v", got, tc.want, r.Violations())
			}
		})
	}
}

func TestRulesKeepTheWeightTimeline(t *testing.T) {
	r := NewRules("web-canary", 1000, time.Second, 0)
	for _, s := range []Sample{{At: at(0)}, {At: at(0.1)}, split(1, 0), split(1.1, 0), split(2, 100), split(4, 0)} {
		r.Observe(s)
	}
	var got []int
	for _, c := range r.Changes() {
		got = append(got, c.Canary)
	}
	if want := []int{-1, 0, 100, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	if c := r.Changes()[2]; !c.At.Equal(at(2)) {
		t.Errorf("100m seen at %s, want %s", c.At, at(2))
	}
}

func TestRulesBoundTheViolationsKept(t *testing.T) {
	r := NewRules("web-canary", 1000, 0, 0)
	for i := 0; i < maxViolations+5; i++ {
		r.Observe(split(float64(i), 100, "web-canary"))
	}
	v := r.Violations()
	if len(v) != maxViolations+1 || v[len(v)-1].Rule != "more" {
		t.Fatalf("%d violations kept, last %v", len(v), v[len(v)-1])
	}
}

// A weight that lasted less than the sampling period is missed by samples
// but not by the split's watch: the supersede of a mid-rollout revision goes
// 200m → 0 → 100m, and only the watch can tell that from a step repeated.
func TestWatchedWeightsSeeWhatSamplesMiss(t *testing.T) {
	sampled := NewRules("web-canary", 1000, 5*time.Second, 100*time.Millisecond)
	watched := NewRules("web-canary", 1000, 5*time.Second, 100*time.Millisecond)
	watched.WatchWeights()
	for _, r := range []*Rules{sampled, watched} {
		r.Observe(split(1, 200))
		r.Observe(split(1.1, 100)) // the 0 between lasted 50 ms
	}
	for _, e := range []struct {
		sec float64
		w   int
	}{{0.5, 200}, {1.02, 0}, {1.07, 100}} {
		watched.Weight(at(e.sec), e.w)
	}
	if got := names(sampled.Violations()); !reflect.DeepEqual(got, []string{"step-repeated"}) {
		t.Errorf("samples alone: violations %v, want the 0 missed and a step-repeated", got)
	}
	if v := watched.Violations(); len(v) != 0 {
		t.Errorf("with the watch: violations %v, want none", v)
	}
	var got []int
	for _, c := range watched.Changes() {
		got = append(got, c.Canary)
	}
	if want := []int{200, 0, 100}; !reflect.DeepEqual(got, want) {
		t.Errorf("watched weights %v, want %v", got, want)
	}
}

func names(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}
