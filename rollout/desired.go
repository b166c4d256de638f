package rollout

import (
	"fmt"

	"github.com/canaryd/canaryd/analysis"
)

// desiredState is the state of every owned object that the (decided) status
// calls for, held back wherever the cluster has not yet shown the step before.
func (d *decider) desiredState() *Desired {
	o, st := d.o, d.st
	obsW := -1
	if o.Weight != nil {
		obsW = *o.Weight
	}
	keep := int32(0)
	if o.Canary != nil {
		keep = o.Canary.Replicas
	}
	ds := &Desired{Paused: true, StableHash: st.StableHash}
	switch st.Phase {
	case PhaseProgressing, PhaseHeld, PhaseWaitingPromotion:
		ds.Weight = st.Weight
		next := st.Weight
		if st.Step < len(d.spec.Steps) {
			next = d.spec.Steps[st.Step]
		}
		// Sized for the next step ahead of time, so advancing never waits
		// for pods and never puts weight on pods that are not there yet.
		ds.CanaryReplicas = need(max(next, st.Weight), o.Replicas)
		ds.CanaryTemplate = obsW == 0
	case PhasePromoting:
		ds.Weight = st.Weight
		ds.CanaryReplicas = max(o.Replicas, 1)
		ds.CanaryTemplate = obsW == 0
		switch st.Stage {
		case StageRollStable:
			ds.Paused = o.Revision != st.Revision
		case StageReturnStable:
			if d.stableReturnable() {
				ds.Weight = 0
			}
		}
	case PhaseRollingBack:
		ds.CanaryReplicas = keep
		if obsW == 0 {
			ds.CanaryReplicas = 0
		}
	default: // resting: no traffic on the canary, then no canary pods
		ds.CanaryReplicas = keep
		if obsW == 0 {
			ds.CanaryReplicas = 0
		}
	}
	return ds
}

// guardCapacity is the last word on weights: a backend with no ready
// endpoint gets no traffic while the other one has some. Neither having
// any leaves the weight as observed: moving it would help nobody.
func (d *decider) guardCapacity() {
	ds, o := d.desired, d.o
	obsW := -1
	if o.Weight != nil {
		obsW = *o.Weight
	}
	switch {
	case ds.Weight > 0 && o.CanaryEndpoints == 0 && o.StableEndpoints > 0:
		if obsW != 0 {
			d.warn("NoReadyEndpoints", "%s-canary has no ready endpoint: all traffic to stable until it has", o.Name)
		}
		ds.Weight = 0
	case ds.Weight < 1000 && o.StableEndpoints == 0 && o.CanaryEndpoints > 0:
		if obsW != 1000 {
			d.warn("NoReadyEndpoints", "%s-stable has no ready endpoint: all traffic to the canary until it has", o.Name)
		}
		ds.Weight = 1000
	}
}

// warnUnpaused raises a warning when foo was found unpaused where canaryd
// keeps it paused: a template change would roll out without analysis.
func (d *decider) warnUnpaused() {
	if d.o.Paused || !d.desired.Paused || d.prev.Phase == "" {
		return
	}
	if d.prev.Phase == PhasePromoting && d.prev.Stage == StageRollStable {
		return // canaryd unpaused it itself
	}
	d.warn("Unpaused", "%s was unpaused by hand; canaryd paused it again (template changes wait for analysis)", d.o.Name)
}

// offboard undoes canaryd's work when the opt-in label goes: all traffic to
// stable, then the split is deleted (the apex Service then balances over
// every pod of the app itself), then canaryd's Services and canary, and foo
// is unpaused. No request meets a backend without pods on the way.
func offboard(o Observed, st Status) Decision {
	ds := &Desired{Offboard: true, Paused: true, StableHash: st.StableHash}
	if o.Weight == nil || *o.Weight == 0 {
		ds.DeleteSplit = true
	}
	if o.Weight != nil && *o.Weight > 0 && o.StableEndpoints == 0 {
		ds.Weight = *o.Weight // nowhere better to send the traffic yet
		ds.DeleteSplit = false
	}
	var events []Event
	if o.Weight == nil {
		ds.DeleteRest, ds.Paused = true, false
		if st.Phase != "" {
			events = append(events, Event{Reason: "Offboarded", Message: fmt.Sprintf("canaryd no longer manages %s: split, Services and canary removed, Deployment unpaused", o.Name)})
		}
	}
	return Decision{Status: st, Desired: ds, Events: events}
}

// PlanScrape says whether the controller should ask Prometheus how many of
// the canary's pods it scrapes, and names the canary Deployment: at step 0,
// once the canary is ready and before it takes any traffic (walk.go,
// canaryScraped). A controller that cannot ask leaves the gate open.
func PlanScrape(o Observed) (string, bool) {
	if !o.Enabled || o.RouteBlocked != "" {
		return "", false
	}
	st, err := ParseStatus(o.Annotations[AnnotationStatus])
	if err != nil || (st.Phase != PhaseProgressing && st.Phase != PhaseHeld) || st.Step != 0 || o.Revision != st.Revision {
		return "", false
	}
	spec, err := ParseSpec(o.Annotations, o.Defaults)
	if err != nil || len(spec.Steps) == 0 || !canaryReady(o, st, need(spec.Steps[0], o.Replicas)) {
		return "", false
	}
	return o.Name + "-canary", true
}

// PlanCheck says whether an analysis is due for this snapshot, and of what.
// The controller runs it and passes the result to Decide as Observed.Check.
//
// A check is due at a step's due time (StepStartedAt + interval) and, during
// the step, every AnalysisPeriod — the early checks let the sequential test
// stop a bad canary after tens of requests instead of a whole interval.
func PlanCheck(o Observed) (analysis.Target, bool) {
	if !o.Enabled || o.RouteBlocked != "" {
		return analysis.Target{}, false
	}
	st, err := ParseStatus(o.Annotations[AnnotationStatus])
	if err != nil {
		return analysis.Target{}, false
	}
	spec, err := ParseSpec(o.Annotations, o.Defaults)
	if err != nil {
		return analysis.Target{}, false
	}
	switch st.Phase {
	case PhaseProgressing, PhaseHeld, PhaseWaitingPromotion:
	default:
		return analysis.Target{}, false
	}
	if st.Step == 0 || st.StepStartedAt == nil || st.StartedAt == nil || o.Revision != st.Revision ||
		o.Weight == nil || *o.Weight != st.Weight {
		return analysis.Target{}, false
	}
	last := o.LastProbe
	if st.LastCheck != nil && st.LastCheck.Time.After(last) {
		last = st.LastCheck.Time
	}
	due := st.StepStartedAt.Add(spec.Interval)
	period := spec.Interval
	if o.AnalysisPeriod > 0 && o.AnalysisPeriod < period {
		period = o.AnalysisPeriod
	}
	dueNow := !o.Now.Before(due) && last.Before(due)
	if !dueNow && o.Now.Before(nextProbe(o, last, period)) {
		return analysis.Target{}, false
	}
	return analysis.Target{
		Namespace:      o.Namespace,
		Canary:         o.Name + "-canary",
		Stable:         o.Name,
		Window:         spec.Interval,
		Since:          *st.StartedAt,
		Now:            o.Now,
		MinSuccessRate: spec.MinSuccessRate,
		MaxLatencyP99:  spec.MaxLatencyP99,
		MinRequests:    spec.MinRequests,
		Checks:         spec.Analysis,
	}, true
}
