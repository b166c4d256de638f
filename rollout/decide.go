package rollout

import (
	"fmt"
	"time"
)

// Decide is canaryd's judgement for one Deployment: from what is observed now
// to the next status, the desired objects, the events and the next look.
//
// It runs the same way on every sync: a snapshot that was already acted upon
// yields the same status and desired state, so a second reconcile writes
// nothing, and a restarted controller picks up from the status annotation.
func Decide(o Observed) Decision {
	if !o.Enabled {
		st, _ := ParseStatus(o.Annotations[AnnotationStatus])
		return offboard(o, st)
	}
	st, err := ParseStatus(o.Annotations[AnnotationStatus])
	if err != nil {
		return Decision{
			Status: Status{Phase: PhaseIdle, Message: err.Error() + "; delete the annotation to let canaryd adopt the Deployment afresh"},
			Events: []Event{{Warning: true, Reason: "InvalidStatus", Message: err.Error()}},
		}
	}
	spec, err := ParseSpec(o.Annotations, o.Defaults)
	if err != nil {
		return invalid(st, err)
	}
	st.fillTimes(o.Now)
	d := &decider{o: o, spec: spec, prev: st, st: st}
	d.st.Message = ""
	if st.Phase == "" {
		d.adopt()
	} else {
		d.commands()
		// A transition hands over to the next phase's handler at once, so a
		// decision is complete (its message, its desired state) and the next
		// reconcile of the same snapshot finds nothing left to change. Each
		// handler gates on what it observes, so this never skips a wait.
		for i := 0; i < 6; i++ {
			phase, stage := d.st.Phase, d.st.Stage
			d.phase()
			if d.st.Phase == phase && d.st.Stage == stage {
				break
			}
		}
	}
	return d.decision()
}

type decider struct {
	o       Observed
	spec    Spec
	prev    Status // as observed
	st      Status // as decided
	desired *Desired
	events  []Event
	remove  []string
	requeue time.Duration
	// advanced: this decision takes the next step (advance).
	advanced bool
}

func (d *decider) decision() Decision {
	switch d.st.Phase {
	case PhaseProgressing, PhaseHeld, PhaseWaitingPromotion, PhasePromoting, PhaseRollingBack:
		d.st.Steps, d.st.Interval = d.spec.Steps, d.spec.Interval.String()
	default:
		d.st.Steps, d.st.Interval = nil, ""
	}
	if d.st.Phase != "" && d.desired == nil {
		d.desired = d.desiredState()
	}
	if d.desired != nil {
		d.guardCapacity()
		d.warnUnpaused()
		d.holdNewSplit()
	}
	return Decision{Status: d.st, Desired: d.desired, Events: d.events, RemoveAnnotations: d.remove,
		RequeueAfter: d.requeue, RouteFirst: d.routeFirst()}
}

// routeFirst: the decision takes exactly the step the stored status
// announced, from the weight observed in place to the one the route will
// carry, so the status write may follow the route's (Decision.RouteFirst).
func (d *decider) routeFirst() bool {
	next, ok := d.prev.Announced()
	ds, o := d.desired, d.o
	return d.advanced && ok && next == d.st.Weight && next != d.prev.Weight && d.st.Step == d.prev.Step+1 &&
		ds != nil && !ds.Offboard && !ds.SkipSplit && ds.Weight == d.st.Weight &&
		o.Weight != nil && *o.Weight == d.prev.Weight && d.prev.Revision == o.Revision
}

func (d *decider) event(reason, format string, args ...any) {
	d.events = append(d.events, Event{Reason: reason, Message: fmt.Sprintf(format, args...)})
}

func (d *decider) warn(reason, format string, args ...any) {
	d.events = append(d.events, Event{Warning: true, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// wake asks to be looked at again after dt (the earliest of all asks wins).
func (d *decider) wake(dt time.Duration) {
	if dt <= 0 {
		dt = time.Millisecond
	}
	if d.requeue == 0 || dt < d.requeue {
		d.requeue = dt
	}
}

// holdNewSplit defers creating the split until the backend that would get
// the traffic has a ready endpoint.
func (d *decider) holdNewSplit() {
	ds, o := d.desired, d.o
	if o.Weight != nil || ds.Offboard {
		return
	}
	if (ds.Weight < 1000 && o.StableEndpoints == 0) || (ds.Weight > 0 && o.CanaryEndpoints == 0) {
		ds.SkipSplit = true
		if d.st.Message == "" {
			d.st.Message = fmt.Sprintf("waiting for ready endpoints behind %s-stable before creating the split", o.Name)
		}
	}
}

// invalid keeps everything as it is and says which annotation is wrong. The
// warning is raised once per distinct message: the status holds the message,
// so a second reconcile of the same bad value finds nothing new to say.
func invalid(st Status, err error) Decision {
	msg := "invalid configuration, nothing changed: " + err.Error()
	var events []Event
	if st.Message != msg {
		events = []Event{{Warning: true, Reason: "InvalidConfig", Message: msg}}
	}
	st.Message = msg
	return Decision{Status: st, Events: events}
}

// adopt takes a Deployment under management once its own rollout is done:
// the ReplicaSet running its current template becomes the stable one.
func (d *decider) adopt() {
	rs := d.completeReplicaSet(d.o.Revision)
	if rs == nil {
		d.st.Phase = ""
		d.st.Message = fmt.Sprintf("waiting for %s to finish its own rollout before adopting it", d.o.Name)
		d.desired = nil
		d.wake(5 * time.Second)
		return
	}
	d.st = Status{Phase: PhaseIdle, StableRevision: rs.Revision, StableHash: rs.Hash, Revision: rs.Revision}
	d.event("Adopted", "canaryd manages %s: stable revision %s (ReplicaSet hash %s), steps %s every %s",
		d.o.Name, rs.Revision, rs.Hash, formatSteps(d.spec.Steps), d.spec.Interval)
}

// completeReplicaSet is foo's ReplicaSet for revision when foo has finished
// rolling out to it: every replica updated and available, no old pods left.
func (d *decider) completeReplicaSet(revision string) *ReplicaSet {
	r := d.o.Rollout
	n := d.o.Replicas
	if !r.ObservedCurrent || r.Updated != n || r.Available != n || r.Total != n {
		return nil
	}
	for i := range d.o.ReplicaSets {
		rs := d.o.ReplicaSets[i]
		if rs.Revision == revision && rs.Available == n {
			return &rs
		}
	}
	return nil
}

func (d *decider) phase() {
	if d.holdForRoute() {
		return
	}
	switch d.st.Phase {
	case PhaseIdle, PhaseSucceeded, PhaseFailed, PhaseWaiting:
		d.rest()
	case PhaseProgressing, PhaseHeld, PhaseWaitingPromotion:
		d.walk()
	case PhasePromoting:
		d.promote()
	case PhaseRollingBack:
		d.rollBack()
	default:
		d.warn("InvalidStatus", "unknown phase %q in %s; treating as Idle", d.st.Phase, AnnotationStatus)
		d.st.Phase = PhaseIdle
		d.rest()
	}
}

// rest handles the phases with no rollout under way: it notices a new
// revision and starts it, unless it failed before, the rollout is paused, or
// the rollout window is closed.
func (d *decider) rest() {
	d.recordPostRollout()
	rev := d.o.Revision
	switch {
	case rev == d.st.StableRevision:
		if d.st.Phase == PhaseFailed || d.st.Phase == PhaseWaiting {
			d.event("Reverted", "the Deployment is back at its stable revision %s", rev)
			d.st.Phase = PhaseIdle
		}
	case rev == d.st.FailedRevision:
		d.st.Phase = PhaseFailed
		d.st.Message = fmt.Sprintf("revision %s failed; set %s or change the Deployment", rev, CmdRetry.Key())
	case d.st.Paused:
		d.wait(fmt.Sprintf("revision %s waits: rollouts are paused (set %s)", rev, CmdResume.Key()))
	default:
		if d.spec.Window != nil {
			if open, at := d.spec.Window.Open(d.o.Now); !open {
				d.wait(fmt.Sprintf("revision %s waits for the rollout window %q, opening %s", rev, d.spec.Window.Spec, at.UTC().Format(time.RFC3339)))
				d.wake(at.Sub(d.o.Now))
				return
			}
		}
		d.start()
	}
}

func (d *decider) wait(msg string) {
	if d.st.Phase != PhaseWaiting {
		d.event("Waiting", "%s", msg)
	}
	d.st.Phase = PhaseWaiting
	d.st.Message = msg
}

// start begins the rollout of foo's current revision.
func (d *decider) start() {
	now := d.o.Now
	st := Status{
		Phase:          PhaseProgressing,
		Revision:       d.o.Revision,
		StableRevision: d.st.StableRevision,
		StableHash:     d.st.StableHash,
		FailedRevision: d.st.FailedRevision,
		LastCommand:    d.st.LastCommand,
		StartedAt:      stamp(now),
		StepStartedAt:  stamp(now),
	}
	if d.st.SkipAnalysis {
		st.Phase, st.Stage = PhasePromoting, StageScaleCanary
		d.warn("SkippingAnalysis", "revision %s is promoted without analysis (%s)", d.o.Revision, CmdSkipAnalysis.Key())
	} else {
		d.event("RolloutStarted", "new revision %s: canary %s-canary starting, steps %s every %s",
			d.o.Revision, d.o.Name, formatSteps(d.spec.Steps), d.spec.Interval)
	}
	d.st = st
	if st.Phase == PhasePromoting {
		d.promote()
	} else {
		d.step0()
	}
}
