package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// A plain step advance is written route first: the stored status announced
// it, so the intent is on record before the route changes.
func TestAPlainStepAdvanceIsWrittenRouteFirst(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	before := w.status()
	if next, ok := before.Announced(); !ok || next != 200 {
		t.Fatalf("step 1 in place announces %d, %v; want 200", next, ok)
	}
	var adv Decision
	for i := 0; i < 15 && w.status().Step == 1; i++ {
		w.now = w.now.Add(time.Second)
		adv = w.tick()
	}
	st := w.status()
	if st.Step != 2 || !adv.RouteFirst {
		t.Fatalf("the advance to step 2: RouteFirst=%v, status %+v", adv.RouteFirst, st)
	}
	// One status write for the step: it records the step as applied from the
	// route write, so first sight of the weight has nothing left to write.
	if !st.Applied || !st.StepStartedAt.Equal(w.now) || *w.weight != 200 {
		t.Fatalf("after the route-first advance: status %+v, weight %d", st, *w.weight)
	}
	again := w.tick()
	if again.Status.Encode() != st.Encode() {
		t.Fatalf("first sight of the weight changed the status:\n%s\n%s", st.Encode(), again.Status.Encode())
	}
	w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	// Steps 1 → 2 and 2 → 3; step 0 → 1 (the canary's first traffic) and the
	// promotion's stages are written intent first.
	if w.routeFirst != 2 {
		t.Errorf("%d route-first decisions, want 2", w.routeFirst)
	}
}

// Which advances may go route first: only the step the stored status
// announced, from the weight in place.
func TestRouteFirstOnlyForTheAnnouncedStep(t *testing.T) {
	at := func(w *world) {
		w.bump("r2")
		w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	}
	toStep2 := func(t *testing.T, w *world) Decision {
		t.Helper()
		for i := 0; i < 20; i++ {
			w.now = w.now.Add(time.Second)
			if d := w.tick(); d.Status.Step == 2 {
				return d
			}
		}
		t.Fatalf("no step 2: %+v", w.status())
		return Decision{}
	}
	t.Run("steps edited before the due time: the new next step is announced, then routed first", func(t *testing.T) {
		w := adopted(t, nil)
		at(w)
		w.o.Annotations[KeySteps] = "100m,300m,500m"
		w.now = w.now.Add(time.Second)
		w.tick()
		if next, _ := w.status().Announced(); next != 300 {
			t.Fatalf("announced %d after the edit, want 300", next)
		}
		if d := toStep2(t, w); !d.RouteFirst || d.Status.Weight != 300 {
			t.Fatalf("RouteFirst=%v weight %d", d.RouteFirst, d.Status.Weight)
		}
	})
	t.Run("steps edited at the due time: intent first", func(t *testing.T) {
		w := adopted(t, nil)
		at(w)
		w.now = w.status().StepStartedAt.Add(10 * time.Second)
		w.o.Annotations[KeySteps] = "100m,250m,500m"
		d := w.tick()
		if d.Status.Step != 2 || d.Status.Weight != 250 || d.RouteFirst {
			t.Fatalf("RouteFirst=%v status %+v", d.RouteFirst, d.Status)
		}
	})
	t.Run("from a hold: route first, and the hold ends", func(t *testing.T) {
		w := adopted(t, nil)
		at(w)
		pass := w.verdict
		w.verdict = func(analysis.Target) *analysis.Result {
			return &analysis.Result{Verdict: analysis.Inconclusive, Reason: "3 requests, fewer than 20"}
		}
		w.run(time.Second, 20*time.Second, phaseIs(PhaseHeld))
		w.verdict = pass
		d := toStep2(t, w)
		if !d.RouteFirst || d.Status.Phase != PhaseProgressing || d.Status.HeldSince != nil {
			t.Fatalf("RouteFirst=%v status %+v", d.RouteFirst, d.Status)
		}
	})
}

// The status write after a route-first route write is lost (a crash, a
// conflict): the route carries the announced weight, and the next reconcile
// takes the step as applied from then, never going back to the old weight
// (world fails a fall that skips 0) nor shortening the step.
func TestALostStatusWriteAfterTheRouteIsAdopted(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	w.loseStatus = 1
	w.run(time.Second, 15*time.Second, func(Status) bool { return *w.weight == 200 })
	if st := w.status(); st.Step != 1 {
		t.Fatalf("the status write was to be lost: %+v", st)
	}
	routed := w.now
	// A restarted controller, a second later.
	w.now = w.now.Add(time.Second)
	w.o.LastProbe = time.Time{}
	w.tick()
	st := w.status()
	if st.Step != 2 || st.Weight != 200 || !st.Applied || st.StepStartedAt.Before(routed) {
		t.Fatalf("not adopted: %+v", st)
	}
	found := false
	for _, e := range w.events {
		found = found || (e.Reason == "StepAdvanced" && strings.Contains(e.Message, "found in place"))
	}
	if !found {
		t.Errorf("no StepAdvanced event for the adopted step: %v", w.reasons())
	}
	w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
}

// A route carrying the next step's weight before the step is due was not
// put there by canaryd: it is set back, not adopted.
func TestTheAnnouncedWeightBeforeTheDueTimeIsNotAdopted(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	w.now = w.now.Add(2 * time.Second)
	o := w.o
	o.Now = w.now
	v := 200
	o.Weight = &v // someone else's write, 8 s early
	d := Decide(o)
	if d.Status.Step != 1 || d.Desired == nil || d.Desired.Weight != 100 || d.RouteFirst {
		t.Fatalf("an early weight was taken: status %+v desired %+v", d.Status, d.Desired)
	}
}

func TestAwaitsApplied(t *testing.T) {
	step1 := Status{Phase: PhaseProgressing, Step: 1, Weight: 100}
	stamped := step1
	stamped.Applied = true
	held := step1
	held.Phase = PhaseHeld
	promoting := Status{Phase: PhasePromoting, Weight: 1000}
	for _, tc := range []struct {
		name   string
		st     Status
		weight int
		want   bool
	}{
		{"a step written intent first, its weight just written", step1, 100, true},
		{"already stamped", stamped, 100, false},
		{"another weight written (the canary's weight moved to stable)", step1, 0, false},
		{"a held step: stamped on sight by the next sync", held, 100, false},
		{"step 0, waiting for the canary", Status{Phase: PhaseProgressing}, 0, false},
		{"promotion stages keep no applied stamp", promoting, 1000, false},
	} {
		if got := tc.st.AwaitsApplied(tc.weight); got != tc.want {
			t.Errorf("%s: AwaitsApplied(%d) = %v, want %v", tc.name, tc.weight, got, tc.want)
		}
	}
}
