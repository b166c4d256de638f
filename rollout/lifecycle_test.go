package rollout

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

func adopted(t testing.TB, ann map[string]string) *world {
	t.Helper()
	w := newWorld(t, ann)
	w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseIdle && w.weight != nil })
	return w
}

func TestAGoodRevisionWalksEveryStepAndIsPromoted(t *testing.T) {
	w := adopted(t, nil)
	if !w.o.Paused || w.weight == nil || *w.weight != 0 || w.stableHash != "h1" {
		t.Fatalf("after adoption: paused=%v weight=%v stable=%q", w.o.Paused, w.weight, w.stableHash)
	}
	start := w.now
	w.bump("r2")
	var weights []int
	end := w.now.Add(5 * time.Minute)
	for ; w.status().Phase != PhaseSucceeded && w.now.Before(end); w.now = w.now.Add(time.Second) {
		w.tick()
		if w.weight != nil && (len(weights) == 0 || weights[len(weights)-1] != *w.weight) {
			weights = append(weights, *w.weight)
		}
	}
	st := w.status()
	if st.Phase != PhaseSucceeded {
		t.Fatalf("not promoted: %+v", st)
	}
	if want := []int{0, 100, 200, 500, 1000, 0}; !reflect.DeepEqual(weights, want) {
		t.Errorf("weights %v, want %v", weights, want)
	}
	if st.StableRevision != "r2" || st.StableHash != "hr2" || w.stableHash != "hr2" {
		t.Errorf("stable after promotion: %+v, service selects %q", st, w.stableHash)
	}
	if w.canaryRepl != 0 || !w.o.Paused {
		t.Errorf("after promotion canary replicas %d, foo paused %v", w.canaryRepl, w.o.Paused)
	}
	// Three steps of 10 s each, plus the last step's interval before promotion.
	if took := w.now.Sub(start); took < 30*time.Second || took > 45*time.Second {
		t.Errorf("rollout took %s, want 30–45 s for 3 steps of 10 s", took)
	}
	for _, r := range []string{"RolloutStarted", "StepAdvanced", "Promoting", "RollingStable", "Promoted"} {
		if !w.hasEvent(r) {
			t.Errorf("no %s event in %v", r, w.reasons())
		}
	}
}

func TestAConclusiveFailureRollsBackAtOnceAndTheRevisionStaysFailed(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	stepAt := w.now
	w.verdict = fail(true)
	w.run(time.Second, 10*time.Second, phaseIs(PhaseFailed))
	if w.now.Sub(stepAt) >= 10*time.Second {
		t.Errorf("rollback took %s: a conclusive failure must not wait for the interval", w.now.Sub(stepAt))
	}
	st := w.status()
	if st.FailedRevision != "r2" || *w.weight != 0 || w.canaryRepl != 0 || !w.o.Paused {
		t.Fatalf("after rollback: %+v weight %d canary %d paused %v", st, *w.weight, w.canaryRepl, w.o.Paused)
	}
	if len(w.promotedTo) != 0 {
		t.Fatalf("foo rolled to %v", w.promotedTo)
	}
	// The failed revision is not tried again, however long we wait.
	w.verdict = verdictOf(analysis.Pass)
	w.stays(time.Second, 2*time.Minute, phaseIs(PhaseFailed))
	if *w.weight != 0 || w.canaryRepl != 0 {
		t.Fatalf("a failed revision got traffic again")
	}
}

func TestPromotionWaitsForTheSequentialTestToAcceptTheCanary(t *testing.T) {
	w := adopted(t, nil)
	w.verdict = func(analysis.Target) *analysis.Result {
		return &analysis.Result{Verdict: analysis.Pass, Reason: "success rate 100% over 10s (6 requests)"}
	}
	w.bump("r2")
	w.run(time.Second, time.Minute, func(s Status) bool { return s.Step == 3 })
	w.stays(time.Second, 2*time.Minute, func(s Status) bool {
		return s.Step == 3 && s.Phase != PhasePromoting && s.Phase != PhaseSucceeded
	})
	if st := w.status(); st.Phase != PhaseHeld || !strings.Contains(st.LastCheck.Reason, "not yet shown") {
		t.Fatalf("status %+v", st)
	}
	w.verdict = verdictOf(analysis.Pass)
	w.run(time.Second, 30*time.Second, phaseIs(PhaseSucceeded))
}

func TestFailedChecksCountUpToMaxFailuresThenRollBack(t *testing.T) {
	w := adopted(t, map[string]string{KeyMaxFailures: "3"})
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	w.verdict = fail(false)
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Failures == 1 })
	if st := w.status(); st.Phase != PhaseProgressing || st.Step != 1 {
		t.Fatalf("after one failure: %+v", st)
	}
	w.run(time.Second, 40*time.Second, phaseIs(PhaseFailed))
	if st := w.status(); st.Failures != 3 {
		t.Errorf("rolled back after %d failures, want 3", st.Failures)
	}
}

func TestAnOutageHoldsTheStepAndNeverRollsBackByItself(t *testing.T) {
	w := adopted(t, map[string]string{KeyProgressDeadline: "1h"})
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	w.verdict = verdictOf(analysis.Error)
	w.run(time.Second, 15*time.Second, phaseIs(PhaseHeld))
	w.stays(time.Second, 10*time.Minute, func(s Status) bool { return s.Phase == PhaseHeld && s.Step == 1 })
	if !w.hasEvent("AnalysisError") {
		t.Errorf("no AnalysisError warning in %v", w.reasons())
	}
	w.verdict = verdictOf(analysis.Pass)
	w.run(time.Second, 30*time.Second, func(s Status) bool { return s.Step == 2 })
	if st := w.status(); st.Phase != PhaseProgressing || st.HeldSince != nil {
		t.Errorf("after the outage: %+v", st)
	}
}

func TestInconclusiveBeyondTheDeadlineActsPerOnInconclusive(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		end          Phase
	}{
		{"hold keeps holding with a warning", "hold", PhaseHeld},
		{"rollback rolls back", "rollback", PhaseFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := adopted(t, map[string]string{KeyOnInconclusive: tc.policy, KeyProgressDeadline: "1m"})
			w.bump("r2")
			w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
			w.verdict = verdictOf(analysis.Inconclusive)
			w.run(time.Second, 3*time.Minute, func(s Status) bool {
				return s.Phase == tc.end && (tc.end != PhaseHeld || strings.Contains(s.Message, "on-inconclusive"))
			})
			if !w.hasEvent("AnalysisInconclusive") {
				t.Errorf("no AnalysisInconclusive event in %v", w.reasons())
			}
		})
	}
}

// A canary that loses every ready endpoint mid-step has its weight moved to
// stable at once (guardCapacity); the step is then held like an
// inconclusive one: it resumes from its start when the canary comes back,
// and past progress-deadline on-inconclusive decides.
func TestACanaryThatLosesItsEndpointsMidStepIsHeldWithADeadline(t *testing.T) {
	t.Run("it comes back: the step starts over and the rollout goes on", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 && s.Applied })
		w.canaryDown = true
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseHeld })
		if st := w.status(); *w.weight != 0 || !strings.HasPrefix(st.Message, noEndpointsPrefix) || st.Step != 2 {
			t.Fatalf("canary down: weight %d, %+v", *w.weight, st)
		}
		w.stays(time.Second, 20*time.Second, func(s Status) bool { return s.Phase == PhaseHeld && s.Step == 2 })
		w.canaryDown = false
		back := w.now
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseProgressing && s.Applied })
		if st := w.status(); *w.weight != 200 || st.Step != 2 || st.StepStartedAt.Before(back) {
			t.Fatalf("canary back: weight %d, %+v", *w.weight, st)
		}
		if !w.hasEvent("Resumed") || !w.hasEvent("NoReadyEndpoints") {
			t.Errorf("events %v, want NoReadyEndpoints and Resumed", w.reasons())
		}
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	})
	t.Run("a Held status without heldSince (written by hand, or by an older canaryd) is dated now", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 && s.Applied })
		st := w.status()
		st.Phase, st.HeldSince = PhaseHeld, nil
		w.o.Annotations[AnnotationStatus] = st.Encode()
		w.canaryDown = true
		w.tick() // the weight goes to stable
		w.tick() // and the step is held for endpoints
		if st := w.status(); st.Phase != PhaseHeld || st.HeldSince == nil || !strings.HasPrefix(st.Message, noEndpointsPrefix) {
			t.Fatalf("%+v", st)
		}
	})
	for _, tc := range []struct {
		policy string
		end    Phase
	}{{"hold", PhaseHeld}, {"rollback", PhaseFailed}} {
		t.Run("it does not come back: on-inconclusive "+tc.policy, func(t *testing.T) {
			w := adopted(t, map[string]string{KeyOnInconclusive: tc.policy, KeyProgressDeadline: "1m"})
			w.bump("r2")
			w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 && s.Applied })
			w.canaryDown = true
			w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseHeld })
			held := w.now
			w.run(time.Second, 2*time.Minute, func(s Status) bool {
				return s.Phase == tc.end && (tc.end != PhaseHeld || strings.Contains(s.Message, "on-inconclusive"))
			})
			if took := w.now.Sub(held); took < time.Minute-time.Second || took > time.Minute+5*time.Second {
				t.Errorf("acted %s after the hold began, want the 1m progress deadline", took)
			}
			if tc.end == PhaseHeld && !w.hasEvent("ProgressDeadlineExceeded") {
				t.Errorf("no ProgressDeadlineExceeded in %v", w.reasons())
			}
		})
	}
}

// Stable losing its endpoints mid-step is the mirror image of the canary
// losing them: all traffic on the canary, a hold with a deadline, and the
// step starting over when stable is back. While held, nothing is written.
func TestAStableThatLosesItsEndpointsMidStepIsHeldWithADeadline(t *testing.T) {
	t.Run("it comes back: the step starts over and the rollout goes on", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 && s.Applied })
		w.stableDown = true
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseHeld })
		if st := w.status(); *w.weight != 1000 || !strings.HasPrefix(st.Message, noStablePrefix) || st.Step != 2 || st.Applied {
			t.Fatalf("stable down: weight %d, %+v", *w.weight, st)
		}
		held := w.o.Annotations[AnnotationStatus]
		for i := 0; i < 20; i++ {
			w.now = w.now.Add(time.Second)
			w.tick()
			w.settles(fmt.Sprintf("held %d s", i))
		}
		if got := w.o.Annotations[AnnotationStatus]; got != held {
			t.Errorf("the held status changed while nothing did:\n%s\n%s", held, got)
		}
		w.stableDown = false
		back := w.now
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseProgressing && s.Applied })
		if st := w.status(); *w.weight != 200 || st.Step != 2 || st.StepStartedAt.Before(back) {
			t.Fatalf("stable back: weight %d, %+v", *w.weight, st)
		}
		if !w.hasEvent("Resumed") || !w.hasEvent("NoReadyEndpoints") {
			t.Errorf("events %v, want NoReadyEndpoints and Resumed", w.reasons())
		}
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
		if w.hasEvent("RolledOutByHand") {
			t.Errorf("events %v: stable's pods were down, not replaced", w.reasons())
		}
	})
	t.Run("it does not come back: on-inconclusive hold", func(t *testing.T) {
		w := adopted(t, map[string]string{KeyProgressDeadline: "1m"})
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 && s.Applied })
		w.stableDown = true
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseHeld })
		held := w.now
		w.run(time.Second, 2*time.Minute, func(s Status) bool { return strings.Contains(s.Message, "on-inconclusive") })
		if took := w.now.Sub(held); took < time.Minute-time.Second || took > time.Minute+5*time.Second {
			t.Errorf("acted %s after the hold began, want the 1m progress deadline", took)
		}
		if st := w.status(); st.Phase != PhaseHeld || *w.weight != 1000 || !w.hasEvent("ProgressDeadlineExceeded") {
			t.Fatalf("past the deadline: weight %d, events %v, %+v", *w.weight, w.reasons(), st)
		}
		w.stableDown = false
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	})
}

// Unpaused by hand mid-rollout, and the Deployment controller replaced every
// stable pod with the canary's revision before canaryd paused foo again:
// there is no stable to return to. The revision foo runs is adopted as
// stable, with a Warning, and traffic returns to foo's own pods.
func TestARolloutFinishedByHandIsAdopted(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 && s.Applied })
	w.o.Paused = false // kubectl rollout resume; the world's controller rolls foo at once
	for i := 0; i < 10 && w.status().Phase != PhaseSucceeded; i++ {
		w.now = w.now.Add(time.Second)
		w.tick()
		w.settles(fmt.Sprintf("%d s after the unpause", i+1))
	}
	st := w.status()
	if st.Phase != PhaseSucceeded || st.StableRevision != "r2" || st.StableHash != "hr2" || *w.weight != 0 || !w.o.Paused {
		t.Fatalf("weight %d, paused %v, %+v", *w.weight, w.o.Paused, st)
	}
	for _, r := range []string{"Unpaused", "RolledOutByHand", "Promoted"} {
		if !w.hasEvent(r) {
			t.Errorf("no %s event in %v", r, w.reasons())
		}
	}
	w.stays(time.Second, 10*time.Second, phaseIs(PhaseSucceeded))
	if w.canaryRepl != 0 {
		t.Errorf("the canary keeps %d replicas", w.canaryRepl)
	}
}

// The canary gets its first traffic only once Prometheus scrapes its pods:
// before that, its requests would be invisible to the analysis.
func TestTheCanaryTakesNoTrafficUntilPrometheusScrapesIt(t *testing.T) {
	t.Run("scraped after a few seconds: step 1 waits for it", func(t *testing.T) {
		w := adopted(t, nil)
		scrapedAt := time.Time{}
		w.scrape = func() (int, string) {
			if scrapedAt.IsZero() {
				scrapedAt = w.now.Add(4 * time.Second) // discovery passes the new pod on later
			}
			if w.now.Before(scrapedAt) {
				return 0, ""
			}
			return 1, ""
		}
		w.bump("r2")
		w.run(time.Second, 3*time.Second, func(s Status) bool {
			return strings.HasPrefix(s.Message, "waiting for Prometheus to scrape the canary: 0/1")
		})
		if *w.weight != 0 {
			t.Fatalf("canary weight %dm before Prometheus scrapes it", *w.weight)
		}
		w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
		if w.now.Before(scrapedAt) {
			t.Errorf("step 1 at %s, before the canary was scraped at %s", w.now.Format(time.TimeOnly), scrapedAt.Format(time.TimeOnly))
		}
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
		if w.scrapes == 0 || w.scrapes > 10 {
			t.Errorf("%d scrape probes, want a few at step 0 and none after", w.scrapes)
		}
	})
	t.Run("Prometheus unreachable: step 0 holds, and past the deadline on-inconclusive decides", func(t *testing.T) {
		w := adopted(t, map[string]string{KeyOnInconclusive: "rollback", KeyProgressDeadline: "1m"})
		w.scrape = func() (int, string) { return 0, "connection refused" }
		w.bump("r2")
		w.run(time.Second, 3*time.Second, func(s Status) bool { return strings.Contains(s.Message, "connection refused") })
		w.run(time.Second, 2*time.Minute, phaseIs(PhaseFailed))
		if !w.hasEvent("RolledBack") {
			t.Errorf("no RolledBack event in %v", w.reasons())
		}
		for _, c := range w.promotedTo {
			if c == "r2" {
				t.Error("r2 promoted without ever being scraped")
			}
		}
	})
}

// Reconciling a snapshot that already reflects canaryd's own writes either
// moves on because it observes them (a gated stage) or writes nothing: within
// a few reconciles, with no other change in the cluster, it reaches a state
// where a reconcile writes nothing and says nothing.
//
// The reconciles run a few milliseconds apart, as they do when a write's own
// watch event or a 409's retry brings the key back at once: a status that
// stamped the time of every reconcile would be written on every reconcile.
func TestReconcilingTheSameStateAgainWritesNothing(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	for i := 0; i < 60; i++ {
		w.tick()
		w.settles(fmt.Sprintf("tick %d", i))
		w.now = w.now.Add(time.Second)
	}
	if st := w.status(); st.Phase != PhaseSucceeded {
		t.Fatalf("rollout did not finish: %+v", st)
	}
}

// settles fails the test unless, with no change in the cluster, at most 4
// reconciles a few milliseconds apart reach one that writes nothing and
// says nothing.
func (w *world) settles(when string) {
	w.t.Helper()
	for j := 1; j <= 4; j++ {
		w.observe()
		o := w.o
		o.Now = w.now.Add(time.Duration(j) * 7 * time.Millisecond)
		again := Decide(o)
		if again.Status.Encode() == w.o.Annotations[AnnotationStatus] && len(again.Events) == 0 &&
			len(again.RemoveAnnotations) == 0 && w.matches(again.Desired) {
			return
		}
		w.apply(again)
	}
	w.t.Fatalf("%s: no fixed point after 4 reconciles without changes; status %s", when, w.o.Annotations[AnnotationStatus])
}

func TestARestartNeverStepsEarly(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	st := w.status()
	// A new controller process: no memory of past probes, the clock a little on.
	w.o.LastProbe = time.Time{}
	for i := 0; i < 9; i++ {
		w.now = w.now.Add(time.Second)
		w.o.LastProbe = time.Time{}
		w.tick()
		if got := w.status(); got.Step != 1 {
			t.Fatalf("%s after the step began, a restarted controller moved to step %d", w.now.Sub(*st.StepStartedAt), got.Step)
		}
	}
	w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Step == 2 })
}

func TestALostWeightWriteRestartsTheStepClock(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 })
	// The decision to go to step 2 is written, its weight is not, for 4 s.
	w.loseWrites = 4
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 2 && *w.weight == 200 })
	// world.checkStepSpacing fails the test if step 3 comes sooner than 10 s
	// after 200m was really applied.
	w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
}

func TestManualCommands(t *testing.T) {
	t.Run("abort rolls back and marks the revision failed", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
		w.o.Annotations[CmdAbort.Key()] = "true"
		w.run(time.Second, 5*time.Second, phaseIs(PhaseFailed))
		st := w.status()
		if _, left := w.o.Annotations[CmdAbort.Key()]; left || !strings.HasPrefix(st.LastCommand, "abort:") {
			t.Fatalf("abort not consumed/recorded: %+v", st)
		}
		w.o.Annotations[CmdRetry.Key()] = ""
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Phase == PhaseProgressing })
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	})
	t.Run("promote skips the remaining steps", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
		w.o.Annotations[CmdPromote.Key()] = "yes"
		w.run(time.Second, 10*time.Second, phaseIs(PhaseSucceeded))
	})
	t.Run("manual promotion waits after the last step", func(t *testing.T) {
		w := adopted(t, map[string]string{KeyManualPromotion: "true"})
		w.bump("r2")
		w.run(time.Second, time.Minute, phaseIs(PhaseWaitingPromotion))
		w.stays(time.Second, time.Minute, phaseIs(PhaseWaitingPromotion))
		w.o.Annotations[CmdPromote.Key()] = "yes"
		w.run(time.Second, 10*time.Second, phaseIs(PhaseSucceeded))
	})
	t.Run("pause freezes the step, resume continues", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
		w.o.Annotations[CmdPause.Key()] = ""
		w.stays(time.Second, time.Minute, func(s Status) bool { return s.Step == 1 && s.Paused })
		w.o.Annotations[CmdResume.Key()] = ""
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	})
	t.Run("skip-analysis promotes the next revision without checks", func(t *testing.T) {
		w := adopted(t, nil)
		w.o.Annotations[CmdSkipAnalysis.Key()] = ""
		w.tick()
		w.verdict = nil
		w.bump("r2")
		w.run(time.Second, 10*time.Second, phaseIs(PhaseSucceeded))
		if w.checks != 0 {
			t.Errorf("%d checks ran", w.checks)
		}
	})
	t.Run("a command that makes no sense is refused and removed", func(t *testing.T) {
		w := adopted(t, nil)
		w.o.Annotations[CmdRetry.Key()] = ""
		dec := w.tick()
		if len(dec.Events) != 1 || !dec.Events[0].Warning || dec.Events[0].Reason != "CommandRefused" {
			t.Fatalf("events %+v", dec.Events)
		}
		if _, left := w.o.Annotations[CmdRetry.Key()]; left {
			t.Fatal("refused command left in place")
		}
	})
}

func TestTheUserChangesTheDeploymentMidRollout(t *testing.T) {
	t.Run("a newer revision starts over", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 })
		w.bump("r3")
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Revision == "r3" && s.Step == 1 })
		if w.canaryRev != "r3" {
			t.Fatalf("canary runs %s", w.canaryRev)
		}
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
		if w.status().StableRevision != "r3" {
			t.Errorf("stable %s", w.status().StableRevision)
		}
	})
	t.Run("a newer revision goes back to stable before its first step, even when that write is lost", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 25*time.Second, func(s Status) bool { return s.Step == 2 })
		w.loseWrites = 1
		w.bump("r3")
		w.tick()
		if w.weight == nil || *w.weight != 200 || w.status().Step != 0 {
			t.Fatalf("the lost write should leave 200m in place at step 0: weight %v, %+v", w.weight, w.status())
		}
		// The canary keeps r2's pods until the split is seen at 0 (desired.go),
		// so r3 cannot be ready before that; world.apply fails the test on
		// any fall of the weight that does not go through 0.
		w.tick()
		if st := w.status(); st.Step != 0 || *w.weight != 0 || w.canaryRev != "r2" {
			t.Fatalf("after the lost write: weight %d, canary %s, %+v", *w.weight, w.canaryRev, st)
		}
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Revision == "r3" && s.Step == 1 })
		w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
	})
	t.Run("a revert withdraws the canary without marking it failed", func(t *testing.T) {
		w := adopted(t, nil)
		w.bump("r2")
		w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 2 })
		w.bump("r1")
		w.run(time.Second, 5*time.Second, phaseIs(PhaseIdle))
		if st := w.status(); st.FailedRevision != "" || *w.weight != 0 || w.canaryRepl != 0 {
			t.Fatalf("after revert %+v", st)
		}
	})
	t.Run("unpaused by hand is paused again with a warning", func(t *testing.T) {
		w := adopted(t, nil)
		w.o.Paused = false
		dec := w.tick()
		if !w.o.Paused || len(dec.Events) == 0 || dec.Events[0].Reason != "Unpaused" {
			t.Fatalf("paused %v events %+v", w.o.Paused, dec.Events)
		}
	})
}

func TestAdoptionWaitsForTheDeploymentsOwnRollout(t *testing.T) {
	w := newWorld(t, nil)
	w.o.Rollout.Available = 2
	w.o.Paused = true // keep the world's controller from finishing it
	dec := Decide(w.o)
	if dec.Desired != nil || dec.Status.Phase != "" || !strings.Contains(dec.Status.Message, "own rollout") {
		t.Fatalf("decision %+v", dec)
	}
}

func TestOffboardingShiftsToStableThenRemovesEverything(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 2 })
	w.o.Enabled = false
	w.tick()
	if w.weight == nil || *w.weight != 0 {
		t.Fatalf("first offboarding step should shift to stable, weight %v", w.weight)
	}
	w.tick()
	if w.weight != nil {
		t.Fatalf("split still there")
	}
	w.tick()
	if _, ok := w.o.Annotations[AnnotationStatus]; ok || w.o.Paused || w.canaryRev != "" {
		t.Fatalf("not fully offboarded: paused %v canary %q", w.o.Paused, w.canaryRev)
	}
	if !w.hasEvent("Offboarded") {
		t.Errorf("no Offboarded event: %v", w.reasons())
	}
}

func TestARolloutWindowMakesANewRevisionWait(t *testing.T) {
	// 2026-11-25 is a Wednesday; the world starts at 12:00 UTC.
	w := adopted(t, map[string]string{KeyWindow: "0 14 * * * 1h"})
	w.bump("r2")
	w.run(time.Second, 5*time.Second, phaseIs(PhaseWaiting))
	dec := w.tick()
	if dec.RequeueAfter < time.Hour || dec.RequeueAfter > 2*time.Hour {
		t.Errorf("requeue after %s, want until 14:00", dec.RequeueAfter)
	}
	w.now = time.Date(2026, 11, 25, 14, 0, 1, 0, time.UTC)
	w.run(time.Second, 5*time.Second, phaseIs(PhaseProgressing))
}

func TestInvalidConfigurationChangesNoObjectAndWarnsOnce(t *testing.T) {
	w := adopted(t, nil)
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 2 })
	before := *w.weight
	w.o.Annotations[KeySteps] = "500m,200m"
	dec := w.tick()
	if dec.Desired != nil {
		t.Fatal("invalid configuration produced desired objects")
	}
	if len(dec.Events) != 1 || dec.Events[0].Reason != "InvalidConfig" || !strings.Contains(dec.Events[0].Message, KeySteps) {
		t.Fatalf("events %+v", dec.Events)
	}
	if *w.weight != before {
		t.Fatal("weight changed")
	}
	if again := w.tick(); len(again.Events) != 0 {
		t.Fatalf("warned twice: %+v", again.Events)
	}
	delete(w.o.Annotations, KeySteps)
	w.run(time.Second, time.Minute, phaseIs(PhaseSucceeded))
}
