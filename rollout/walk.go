package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// need is how many canary replicas carry weight w (milli) at the same load
// per pod as the stable replicas: ceil(w × R / 1000), at least 1.
//
// With R = 4 stable replicas: 100m → 1, 200m → 1, 300m → 2, 500m → 2,
// 1000m → 4. With R = 1 every step needs 1.
func need(w int, replicas int32) int32 {
	n := (int64(w)*int64(replicas) + 999) / 1000
	if n < 1 {
		n = 1
	}
	return int32(n)
}

// walk drives Progressing, Held and WaitingPromotion: the canary walks its
// steps while the analysis holds.
//
// A step ends no sooner than interval after it began (StepStartedAt, kept in
// the status, so restarts cannot shorten it). Checks run every
// AnalysisPeriod during the step; before the step is due only a conclusive
// failure (the sequential test rejected the canary) acts, by rolling back at
// once. At or after the due time the check decides: Pass advances, Fail
// counts against max-failures and repeats the step, Inconclusive or Error
// holds.
func (d *decider) walk() {
	o := d.o
	if o.Revision != d.st.Revision {
		d.supersede()
		return
	}
	if d.st.Step == 0 {
		d.step0()
		return
	}
	if d.adoptAnnounced() {
		return
	}
	stableGone := d.st.Weight < 1000 && o.StableEndpoints == 0 && o.CanaryEndpoints > 0
	if stableGone || o.Weight == nil || *o.Weight != d.st.Weight {
		// The step's time counts from when its weight is in place: if the
		// write after the decision was lost (a crash, a failed write) or
		// guardCapacity moved the weight, the step is no longer applied and
		// its clock starts again when the weight is next seen in place, so
		// no step ever lasts less than interval. The stamp is taken once,
		// when the step stops being applied: a status that changed on every
		// reconcile would be written on every reconcile, and each write
		// would make the next one meet a 409.
		if d.st.Applied || d.st.StepStartedAt == nil {
			d.st.StepStartedAt, d.st.Applied = stamp(o.Now), false
		}
		switch {
		case stableGone:
			d.holdForStable()
			return
		case d.st.Weight > 0 && o.CanaryEndpoints == 0:
			d.holdForEndpoints()
			return
		case strings.HasPrefix(d.prev.Message, noEndpointsPrefix):
			d.st.Phase, d.st.HeldSince = PhaseProgressing, nil
			d.event("Resumed", "%s-canary has ready endpoints again: step %d/%d starts over at %dm", o.Name, d.st.Step, len(d.spec.Steps), d.st.Weight)
		case strings.HasPrefix(d.prev.Message, noStablePrefix):
			d.st.Phase, d.st.HeldSince = PhaseProgressing, nil
			d.event("Resumed", "%s-stable has ready endpoints again: step %d/%d starts over at %dm", o.Name, d.st.Step, len(d.spec.Steps), d.st.Weight)
		}
		d.st.Message = fmt.Sprintf("applying canary weight %dm", d.st.Weight)
		return
	}
	if !d.st.Applied {
		// First sight of the weight in place: the step's time starts now,
		// however long the writes took (a throttled API server, a retry).
		d.st.StepStartedAt, d.st.Applied = stamp(o.Now), true
	}
	due := d.st.StepStartedAt.Add(d.spec.Interval)
	if c := o.Check; c != nil {
		if c.Verdict == analysis.Fail && c.Final {
			d.st.LastCheck = newCheck(o.Now, c)
			d.beginRollBack("the canary is worse than stable: "+c.Reason, true)
			return
		}
		if !o.Now.Before(due) && d.st.Phase != PhaseWaitingPromotion && !d.st.Paused && !d.windowHolds() {
			d.judge(c)
			if d.st.Phase != PhaseProgressing && d.st.Phase != PhaseHeld {
				return
			}
			due = d.st.StepStartedAt.Add(d.spec.Interval)
		}
	}
	switch {
	case d.windowHolds():
		_, at := d.spec.Window.Open(o.Now)
		d.st.Message = fmt.Sprintf("outside the rollout window: holding at step %d/%d until %s", d.st.Step, len(d.spec.Steps), at.UTC().Format(time.RFC3339))
		d.wake(at.Sub(o.Now))
	case d.st.Paused:
		d.st.Message = fmt.Sprintf("paused at step %d/%d (set %s to continue)", d.st.Step, len(d.spec.Steps), CmdResume.Key())
	case d.st.Phase == PhaseWaitingPromotion:
		d.st.Message = fmt.Sprintf("all steps passed; set %s to promote", CmdPromote.Key())
		if !d.spec.ManualPromotion && d.spec.Hooks[HookConfirmPromotion] != "" {
			d.st.Message = ""
			if d.gate(HookConfirmPromotion) {
				d.beginPromotion("confirmed by the confirm-promotion webhook")
				return
			}
		}
	case d.st.Phase == PhaseHeld:
		d.checkHeldDeadline()
	}
	d.wakeForCheck(due)
}

// noEndpointsPrefix starts the message of a step held because the canary
// lost every ready endpoint.
const noEndpointsPrefix = "the canary has no ready endpoint"

// holdForEndpoints: the canary lost every ready endpoint mid-step (its pods
// evicted, crashing, deleted), so its weight is on stable (guardCapacity).
// That is a hold like an inconclusive check: if the canary does not come
// back within progress-deadline, on-inconclusive decides. When it does, the
// step starts over with its weight in place.
func (d *decider) holdForEndpoints() {
	d.holdForBackend(noEndpointsPrefix, fmt.Sprintf("its %dm of step %d/%d stay on stable until it has one", d.st.Weight, d.st.Step, len(d.spec.Steps)))
}

// holdForBackend holds the step while a backend has no ready endpoint:
// Held since the first time, and past progress-deadline on-inconclusive
// decides. Both messages start with prefix, so a backend that comes back
// after the deadline still resumes its step (walk).
func (d *decider) holdForBackend(prefix, detail string) {
	d.st.Phase = PhaseHeld
	if d.st.HeldSince == nil {
		d.st.HeldSince = stamp(d.o.Now)
	}
	d.st.Message = prefix + ": " + detail
	left := d.st.HeldSince.Add(d.spec.ProgressDeadline).Sub(d.o.Now)
	if left <= 0 {
		d.onDeadline(fmt.Sprintf("%s for %s", prefix, d.spec.ProgressDeadline))
		return
	}
	d.wake(left)
}

// noStablePrefix starts the message of a step held because foo-stable lost
// every ready endpoint.
const noStablePrefix = "the stable pods have no ready endpoint"

// holdForStable: foo-stable lost every ready endpoint mid-step while the
// canary has some, so all traffic is on the canary (guardCapacity) and the
// analysis has nothing to compare it with. Two causes:
//
//   - foo's own rollout replaced stable's pods with the canary's revision:
//     someone unpaused foo (kubectl rollout resume) and the Deployment
//     controller finished before canaryd paused it again. There is no
//     stable left to return to, and only a change of foo's template could
//     bring one back: the revision foo now runs is adopted as stable (the
//     promotion's last stage, with a Warning that its analysis was cut
//     short), so traffic goes back to foo's own full set of pods instead of
//     staying on a canary sized for a step.
//   - anything else (evicted, crashing, deleted pods): a hold like a canary
//     without endpoints; the step starts over when stable is back, and
//     past progress-deadline on-inconclusive decides.
func (d *decider) holdForStable() {
	o := d.o
	if rs := d.completeReplicaSet(d.st.Revision); rs != nil && rs.Hash != d.st.StableHash {
		d.warn("RolledOutByHand", "%s's own rollout replaced the stable pods with revision %s while it was unpaused, at step %d/%d: "+
			"adopting that revision as stable without the rest of its analysis", o.Name, d.st.Revision, d.st.Step, len(d.spec.Steps))
		d.st.Phase, d.st.Stage, d.st.HeldSince = PhasePromoting, StageReturnStable, nil
		d.st.StableHash, d.st.StableRevision, d.st.Weight = rs.Hash, d.st.Revision, 1000
		d.st.Message = fmt.Sprintf("promotion: returning traffic to %s-stable (revision %s, rolled out by hand)", o.Name, d.st.Revision)
		return
	}
	d.holdForBackend(noStablePrefix, fmt.Sprintf("all traffic is on the canary, and step %d/%d (%dm) starts over once they have one", d.st.Step, len(d.spec.Steps), d.st.Weight))
}

// windowHolds: the rollout window is closed and the configuration says a
// rollout under way holds until it opens (outside-window: hold).
func (d *decider) windowHolds() bool {
	if d.spec.Window == nil || d.spec.OutsideWindow != "hold" {
		return false
	}
	open, _ := d.spec.Window.Open(d.o.Now)
	return !open
}

// step0 waits for the canary to be ready for the first step's weight.
func (d *decider) step0() {
	o := d.o
	want := need(d.spec.Steps[0], o.Replicas)
	c := o.Canary
	if canaryReady(o, d.st, want) {
		if !d.canaryScraped(want) {
			return
		}
		if d.st.PreRollout != d.st.Revision {
			if !d.gate(HookPreRollout) {
				d.checkStepDeadline("the pre-rollout webhook did not say yes")
				return
			}
			d.st.PreRollout = d.st.Revision
		}
		d.st.Step, d.st.Weight, d.st.StepStartedAt, d.st.Applied = 1, d.spec.Steps[0], stamp(o.Now), false
		d.event("StepAdvanced", "canary ready; step 1/%d: canary weight %dm", len(d.spec.Steps), d.st.Weight)
		return
	}
	ready := int32(0)
	if c != nil && c.Revision == d.st.Revision {
		ready = c.Ready
	}
	d.st.Message = fmt.Sprintf("waiting for the canary: %d/%d ready", ready, want)
	d.checkStepDeadline(fmt.Sprintf("canary not ready (%d/%d ready)", ready, want))
}

// scrapeRecheck is how soon to look again while waiting for Prometheus to
// scrape the canary: a scrape interval or a few, not an analysis period.
const scrapeRecheck = time.Second

// canaryScraped gates the canary's first traffic on Prometheus scraping its
// pods. A new pod is scraped only once Prometheus's service discovery has
// passed it on — seconds after it is ready, and never if it is not meshed or
// no scrape job matches it — and until then its requests are invisible to
// the analysis: a bad canary would serve them unjudged. Without an answer
// (the controller did not ask: PlanScrape) the gate is open.
func (d *decider) canaryScraped(want int32) bool {
	o := d.o
	switch {
	case o.ScrapeError != "":
		d.st.Message = "cannot tell yet whether Prometheus scrapes the canary: " + truncate(o.ScrapeError, 200)
	case o.CanaryScraped == nil || int32(*o.CanaryScraped) >= want:
		return true
	default:
		d.st.Message = fmt.Sprintf("waiting for Prometheus to scrape the canary: %d/%d pods scraped", *o.CanaryScraped, want)
	}
	d.checkStepDeadline("the canary's pods not scraped by Prometheus")
	d.wake(scrapeRecheck)
	return false
}

// checkStepDeadline acts per on-inconclusive once step 0 has taken longer
// than progress-deadline, and otherwise asks to be woken for it.
func (d *decider) checkStepDeadline(why string) {
	left := d.st.StepStartedAt.Add(d.spec.ProgressDeadline).Sub(d.o.Now)
	if left <= 0 {
		d.onDeadline(fmt.Sprintf("%s within %s", why, d.spec.ProgressDeadline))
		return
	}
	d.wake(min(left, d.period()))
}

// judge applies a check made at or after the step's due time.
func (d *decider) judge(c *analysis.Result) {
	if c.Verdict == analysis.Pass && d.st.Step >= len(d.spec.Steps) && !c.NotWorse {
		// Promotion is the step that cannot be taken back: besides the
		// thresholds over the last window, the sequential test must have
		// accepted the canary over the whole rollout. Until then, hold.
		held := *c
		held.Verdict = analysis.Inconclusive
		held.Reason = c.Reason + "; not yet shown to be no worse than stable: collecting evidence before promoting"
		c = &held
	}
	now := d.o.Now
	last := d.st.LastCheck
	d.st.LastCheck = newCheck(now, c)
	switch c.Verdict {
	case analysis.Pass:
		if d.st.Phase == PhaseHeld {
			d.event("Resumed", "analysis passes again: %s", c.Reason)
		}
		d.st.Phase, d.st.HeldSince, d.st.Inconclusive = PhaseProgressing, nil, 0
		d.advance(c)
	case analysis.Fail:
		d.st.Failures++
		if d.st.Failures >= d.spec.MaxFailures {
			d.beginRollBack(fmt.Sprintf("%d of %d allowed failed checks: %s", d.st.Failures, d.spec.MaxFailures, c.Reason), true)
			return
		}
		d.st.StepStartedAt = stamp(now)
		d.warn("AnalysisFailed", "check failed (%d/%d): %s; step %d repeats", d.st.Failures, d.spec.MaxFailures, c.Reason, d.st.Step)
	default: // Inconclusive, Error: hold the step; an outage never rolls back by itself
		d.st.Inconclusive++
		changed := last == nil || last.Verdict != c.Verdict
		if d.st.Phase != PhaseHeld {
			d.st.Phase, d.st.HeldSince, changed = PhaseHeld, stamp(now), true
		}
		if changed {
			if c.Verdict == analysis.Error {
				d.warn("AnalysisError", "holding at step %d: analysis could not be made: %s", d.st.Step, c.Reason)
			} else {
				d.event("AnalysisInconclusive", "holding at step %d: %s", d.st.Step, c.Reason)
			}
		}
	}
}

// advance moves to the next step, or to promotion after the last one,
// once the canary has the replicas the next weight needs.
func (d *decider) advance(c *analysis.Result) {
	n := len(d.spec.Steps)
	if d.st.Step >= n {
		if d.spec.ManualPromotion || d.spec.Hooks[HookConfirmPromotion] != "" {
			d.st.Phase = PhaseWaitingPromotion
			how := "set " + CmdPromote.Key() + " to promote"
			if !d.spec.ManualPromotion {
				how = "asking the confirm-promotion webhook"
			}
			d.event("WaitingPromotion", "all %d steps passed (%s); %s", n, c.Reason, how)
			return
		}
		d.beginPromotion(fmt.Sprintf("all %d steps passed (%s)", n, c.Reason))
		return
	}
	next := d.spec.Steps[d.st.Step]
	want := need(next, d.o.Replicas)
	if cn := d.o.Canary; cn == nil || cn.Ready < want {
		ready := int32(0)
		if cn != nil {
			ready = cn.Ready
		}
		d.st.Message = fmt.Sprintf("step %d waits for canary capacity: %d/%d ready", d.st.Step+1, ready, want)
		return
	}
	d.st.Step++
	d.st.Weight, d.st.StepStartedAt, d.st.Applied = next, stamp(d.o.Now), false
	d.advanced = true
	d.event("StepAdvanced", "step %d/%d: canary weight %dm (%s)", d.st.Step, n, next, c.Reason)
}

// adoptAnnounced: the route already carries the weight the status announced
// for the next step, after the step's due time. Only canaryd's RouteFirst
// write puts it there, after a passing check; the status write that was to
// follow was lost (a crash, a conflict). The step is taken as applied from
// now, which can make it last longer than interval, never shorter; going
// back to the old weight would lower the canary's traffic without passing
// through 0. It reports whether the step was adopted and the walk is done.
func (d *decider) adoptAnnounced() bool {
	o := d.o
	next, ok := d.st.Announced()
	if !ok || o.Weight == nil || *o.Weight != next || *o.Weight == d.st.Weight ||
		o.Now.Before(d.st.StepStartedAt.Add(d.spec.Interval)) {
		return false
	}
	d.st.Step++
	d.st.Weight = next
	d.st.MarkApplied(o.Now)
	d.st.Phase, d.st.HeldSince = PhaseProgressing, nil
	d.event("StepAdvanced", "step %d/%d: canary weight %dm found in place (its status write was lost); the step counts from now",
		d.st.Step, len(d.st.Steps), next)
	d.wakeForCheck(d.st.StepStartedAt.Add(d.spec.Interval))
	return true
}

func (d *decider) checkHeldDeadline() {
	if d.st.HeldSince == nil {
		return
	}
	left := d.st.HeldSince.Add(d.spec.ProgressDeadline).Sub(d.o.Now)
	if left <= 0 {
		d.onDeadline(fmt.Sprintf("analysis held for %s without a verdict", d.spec.ProgressDeadline))
		return
	}
	d.wake(left)
}

// onDeadline acts per on-inconclusive when progress stalls too long.
func (d *decider) onDeadline(why string) {
	if d.spec.OnInconclusive == "rollback" {
		d.beginRollBack(why+" (on-inconclusive: rollback)", true)
		return
	}
	msg := why + "; holding (on-inconclusive: hold): promote, abort or fix the canary"
	if d.prev.Message != msg {
		d.warn("ProgressDeadlineExceeded", "%s", msg)
	}
	if d.st.Phase == PhaseProgressing {
		d.st.Phase = PhaseHeld
	}
	if d.st.HeldSince == nil {
		d.st.HeldSince = stamp(d.o.Now)
	}
	d.st.Message = msg
}

// wakeForCheck asks to be woken for the next probe or the step's due time.
func (d *decider) wakeForCheck(due time.Time) {
	period := d.period()
	next := period
	if !d.o.ScrapedAt.IsZero() {
		// The probe just made (if any) is the last; the next is placed
		// after a scrape of the canary (nextProbe, as PlanCheck gates it).
		last := d.o.LastProbe
		if d.o.Check != nil {
			last = d.o.Now
		} else if c := d.prev.LastCheck; c != nil && c.Time.After(last) {
			last = c.Time
		}
		if !last.IsZero() {
			next = nextProbe(d.o, last, period).Sub(d.o.Now)
		}
		if next <= 0 {
			// Overdue, yet PlanCheck asked for none (a status it cannot
			// plan from): a period, as without the phase, never a spin.
			next = period
		}
	}
	if left := due.Sub(d.o.Now); left > 0 && left < next {
		d.wake(left)
		return
	}
	d.wake(next)
}

func (d *decider) period() time.Duration {
	if d.o.AnalysisPeriod > 0 && d.o.AnalysisPeriod < d.spec.Interval {
		return d.o.AnalysisPeriod
	}
	return d.spec.Interval
}

// supersede handles foo's template changing while a rollout is under way.
func (d *decider) supersede() {
	rev := d.o.Revision
	switch rev {
	case d.st.StableRevision:
		d.beginRollBack(fmt.Sprintf("the Deployment was reverted to its stable revision %s", rev), false)
	case d.st.FailedRevision:
		d.beginRollBack(fmt.Sprintf("the Deployment was changed to revision %s, which failed before", rev), false)
	default:
		d.event("Superseded", "revision %s replaced by %s mid-rollout: starting over at step 1", d.st.Revision, rev)
		d.start()
	}
}
