package rollout

import (
	"fmt"
	"strings"
)

// routeHoldPrefix starts the status message of a rollout held because its
// route is blocked. The message is the only memory of the hold: the decision
// after the block lifts sees it in the previous status and restarts the step.
const routeHoldPrefix = "route blocked, holding at step "

// holdForRoute keeps a rollout under way from moving the canary weight while
// Observed.RouteBlocked says the route cannot carry it — a ServiceProfile on
// the apex overrides an HTTPRoute in Linkerd, so a shifted weight would do
// nothing and the analysis would judge traffic the weights did not send. It
// reports whether it handled the decision.
//
// Only the walk (Progressing, Held, WaitingPromotion) is held: starting a
// rollout brings up the canary at weight 0, which is as harmless blocked as
// not, and promotion, roll-back and the one-shot commands go on, since they
// are what a person reaches for to end the situation. The hold raises one
// Warning per distinct reason (the status keeps the message) and runs no
// analysis (PlanCheck plans none while blocked).
func (d *decider) holdForRoute() bool {
	o := d.o
	walking := d.st.Phase == PhaseProgressing || d.st.Phase == PhaseHeld || d.st.Phase == PhaseWaitingPromotion
	if !walking || o.Revision != d.st.Revision {
		return false // a superseded revision starts over at weight 0: let walk do it
	}
	if o.RouteBlocked == "" {
		d.resumeAfterRoute()
		return false
	}
	msg := fmt.Sprintf("%s%d/%d: %s", routeHoldPrefix, d.st.Step, len(d.spec.Steps), o.RouteBlocked)
	if d.prev.Message != msg {
		d.warn("RouteBlocked", "%s", msg)
	}
	d.st.Message = msg
	ds := d.desiredState()
	if o.Weight != nil {
		ds.Weight = *o.Weight // whatever the route carries now stays
	}
	d.desired = ds
	return true
}

// resumeAfterRoute restarts the step once the route carries weights again:
// the time spent blocked does not count towards the step's interval (or, at
// step 0, the progress deadline), because the traffic in it was not split
// the way the step says.
func (d *decider) resumeAfterRoute() {
	if !strings.HasPrefix(d.prev.Message, routeHoldPrefix) {
		return
	}
	now := stamp(d.o.Now)
	if d.st.StepStartedAt != nil && d.st.StepStartedAt.Equal(*now) {
		return // already resumed in this decision
	}
	// Step 0's start dates its progress deadline, which the block must not
	// eat up either.
	d.st.StepStartedAt = now
	if d.st.HeldSince != nil {
		d.st.HeldSince = now
	}
	d.event("RouteUnblocked", "the route carries weights again: step %d/%d starts afresh", d.st.Step, len(d.spec.Steps))
}
