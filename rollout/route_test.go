package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

const profileBlock = "ServiceProfile foo.shop.svc.cluster.local overrides HTTPRoute foo"

func warnings(w *world, reason string) []Event {
	var out []Event
	for _, e := range w.events {
		if e.Reason == reason && e.Warning {
			out = append(out, e)
		}
	}
	return out
}

func TestABlockedRouteHoldsTheStepWithOneWarningAndNoAnalysis(t *testing.T) {
	w := adopted(t, map[string]string{KeyRouter: RouterHTTPRoute})
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	checks := w.checks
	w.o.RouteBlocked = profileBlock

	// Many intervals pass, and every verdict would say "advance".
	w.stays(time.Second, time.Minute, func(s Status) bool {
		return s.Phase == PhaseProgressing && s.Step == 1 && *w.weight == 100
	})
	if w.checks != checks {
		t.Errorf("%d analyses ran while the route was blocked", w.checks-checks)
	}
	ws := warnings(w, "RouteBlocked")
	if len(ws) != 1 || !strings.Contains(ws[0].Message, profileBlock) || !strings.Contains(ws[0].Message, "step 1/3") {
		t.Fatalf("RouteBlocked warnings %+v, want one naming the reason and the step", ws)
	}
	if st := w.status(); !strings.Contains(st.Message, profileBlock) {
		t.Errorf("status message %q does not say why", st.Message)
	}

	// Unblocked, the step starts afresh: a full interval before step 2.
	w.o.RouteBlocked = ""
	unblocked := w.now
	w.run(time.Second, 30*time.Second, func(s Status) bool { return s.Step == 2 })
	if gap := w.now.Sub(unblocked); gap < 10*time.Second {
		t.Errorf("step 2 came %s after the block lifted, want at least the 10 s interval", gap)
	}
	if !w.hasEvent("RouteUnblocked") {
		t.Errorf("no RouteUnblocked event: %v", w.reasons())
	}
	w.run(time.Second, 2*time.Minute, phaseIs(PhaseSucceeded))
}

func TestABlockedRouteLetsTheCanaryComeUpButNotTakeTraffic(t *testing.T) {
	w := adopted(t, map[string]string{KeyRouter: RouterHTTPRoute})
	w.o.RouteBlocked = profileBlock
	w.bump("r2")
	w.stays(time.Second, 2*time.Minute, func(s Status) bool {
		return s.Phase == PhaseProgressing && s.Step == 0 && *w.weight == 0
	})
	if w.canaryRev != "r2" || w.canaryRdy < 1 {
		t.Errorf("canary %q with %d ready: it should be up, waiting", w.canaryRev, w.canaryRdy)
	}
	if len(warnings(w, "RouteBlocked")) != 1 || w.hasEvent("ProgressDeadlineExceeded") {
		t.Errorf("events %v: want one RouteBlocked and no deadline while blocked", w.reasons())
	}
	w.o.RouteBlocked = ""
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
}

func TestAbortAndRollBackGoOnWhileTheRouteIsBlocked(t *testing.T) {
	w := adopted(t, map[string]string{KeyRouter: RouterHTTPRoute})
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	w.o.RouteBlocked = "HTTPRoute foo not accepted: NoMatchingParent"
	w.tick()
	w.o.Annotations[CmdAbort.Key()] = "true"
	w.run(time.Second, 10*time.Second, phaseIs(PhaseFailed))
	if *w.weight != 0 {
		t.Errorf("weight %d after the roll-back", *w.weight)
	}
}

func TestAConclusiveFailureIsNotActedOnWhileBlocked(t *testing.T) {
	w := adopted(t, map[string]string{KeyRouter: RouterHTTPRoute})
	w.bump("r2")
	w.run(time.Second, 10*time.Second, func(s Status) bool { return s.Step == 1 })
	w.o.RouteBlocked = profileBlock
	// Even if a check were made, a blocked route's traffic is not the
	// step's: Decide ignores it.
	o := w.o
	o.Now = w.now.Add(time.Second)
	o.Check = &analysis.Result{Verdict: analysis.Fail, Final: true, Reason: "bad"}
	w.observe()
	o.Weight, o.Canary, o.CanaryEndpoints, o.StableEndpoints = w.o.Weight, w.o.Canary, w.o.CanaryEndpoints, w.o.StableEndpoints
	dec := Decide(o)
	if dec.Status.Phase != PhaseProgressing || dec.Desired == nil || dec.Desired.Weight != 100 {
		t.Fatalf("blocked decision %+v, desired %+v", dec.Status, dec.Desired)
	}
	if _, due := PlanCheck(o); due {
		t.Error("PlanCheck plans an analysis on a blocked route")
	}
}
