package rollout

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// world is a tiny model of the cluster for driving Decide through whole
// rollouts: it applies each Decision the way the kube package does and lets
// the Deployment controller, the ReplicaSets and the endpoints catch up one
// tick later. It checks DESIGN.md's invariants on every tick.
type world struct {
	t   testing.TB
	now time.Time
	o   Observed
	// verdict answers every planned check; nil answers none.
	verdict func(analysis.Target) *analysis.Result
	// hook answers every planned webhook call; nil answers yes.
	hook func(HookCall) *HookResult
	// scrape answers every planned scrape probe (pods scraped, or an error);
	// nil does not ask, as a controller without a Prometheus would not.
	scrape  func() (int, string)
	scrapes int
	calls   []HookCall

	hashes     map[string]string // revision → pod-template-hash
	canaryRev  string
	canaryRepl int32
	canaryRdy  int32  // ready canary pods: catch up with canaryRepl one tick later
	canaryDown bool   // every canary pod is gone or unready (evicted, crashing)
	stableDown bool   // every stable pod is gone or unready
	stableHash string // foo-stable's selector
	weight     *int
	lastChange time.Time // when the canary weight last changed
	lastWeight int
	// loseWrites drops this many routing writes after a status write, as a
	// controller killed between the two would.
	loseWrites int
	// loseStatus drops this many status writes that follow a RouteFirst
	// route write, as a controller killed between the two would.
	loseStatus int
	routeFirst int // RouteFirst decisions carried out route first
	events     []Event
	promotedTo []string // revisions foo rolled to
	checks     int
}

func newWorld(t testing.TB, annotations map[string]string) *world {
	t.Helper()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	w := &world{t: t, now: now, hashes: map[string]string{"r1": "h1"}}
	w.o = Observed{
		Now: now, Defaults: testDefaults(), Namespace: "shop", Name: "foo",
		Annotations: annotations, Enabled: true, Replicas: 4, Revision: "r1",
		Rollout:     DeploymentRollout{ObservedCurrent: true, Updated: 4, Available: 4, Total: 4},
		ReplicaSets: []ReplicaSet{{Hash: "h1", Revision: "r1", Replicas: 4, Available: 4}},
	}
	if w.o.Annotations == nil {
		w.o.Annotations = map[string]string{}
	}
	w.verdict = func(analysis.Target) *analysis.Result {
		return &analysis.Result{Verdict: analysis.Pass, NotWorse: true, Reason: "success rate 100%"}
	}
	return w
}

func testDefaults() Spec {
	s := DefaultSpec()
	s.Interval = 10 * time.Second
	s.ProgressDeadline = time.Minute
	return s
}

func (w *world) status() Status {
	st, err := ParseStatus(w.o.Annotations[AnnotationStatus])
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

// bump changes foo's template to revision rev (foo stays paused).
func (w *world) bump(rev string) {
	w.o.Revision = rev
	w.o.Rollout.ObservedCurrent = w.o.Paused // a paused Deployment observes the change without rolling
	if _, ok := w.hashes[rev]; !ok {
		w.hashes[rev] = "h" + rev
	}
}

// tick runs one reconcile at the current time and applies its decision.
func (w *world) tick() Decision {
	w.t.Helper()
	w.progress()
	w.observe()
	o := w.o
	o.Now = w.now
	if _, ok := PlanScrape(o); ok && w.scrape != nil {
		w.scrapes++
		n, err := w.scrape()
		if err != "" {
			o.ScrapeError = err
		} else {
			o.CanaryScraped = &n
		}
	}
	if target, ok := PlanCheck(o); ok && w.verdict != nil {
		o.Check = w.verdict(target)
		o.LastProbe = w.now
		w.o.LastProbe = w.now
		w.checks++
	}
	if call, ok := PlanHook(o); ok {
		w.calls = append(w.calls, call)
		r := &HookResult{Hook: call.Hook, OK: true}
		if w.hook != nil {
			r = w.hook(call)
		}
		o.Hook = r
		o.LastHook = w.now
		w.o.LastHook = w.now
	}
	dec := Decide(o)
	w.apply(dec)
	return dec
}

func (w *world) callsOf(h Hook) int {
	n := 0
	for _, c := range w.calls {
		if c.Hook == h {
			n++
		}
	}
	return n
}

// run ticks every step until cond holds or limit passes.
func (w *world) run(step, limit time.Duration, cond func(Status) bool) {
	w.t.Helper()
	end := w.now.Add(limit)
	for ; !w.now.After(end); w.now = w.now.Add(step) {
		w.tick()
		if cond(w.status()) {
			return
		}
	}
	w.t.Fatalf("condition not reached within %s; status %+v", limit, w.status())
}

// stays ticks for d and fails the test the first time cond does not hold.
func (w *world) stays(step, d time.Duration, cond func(Status) bool) {
	w.t.Helper()
	end := w.now.Add(d)
	for ; !w.now.After(end); w.now = w.now.Add(step) {
		w.tick()
		if !cond(w.status()) {
			w.t.Fatalf("at %s: condition broke; status %+v", w.now.Format(time.TimeOnly), w.status())
		}
	}
}

func (w *world) apply(dec Decision) {
	if dec.RouteFirst {
		// As the controller does: the route, then the status recording the
		// step as applied from the route write's success.
		w.routeFirst++
		lost := w.loseWrites > 0
		w.applyDesired(dec)
		if lost {
			// The route write failed: the controller writes the intent
			// instead, and the step goes on the intent-first way.
			w.applyStatus(dec)
			return
		}
		if w.loseStatus > 0 {
			w.loseStatus--
			return
		}
		dec.Status.MarkApplied(w.now)
		w.applyStatus(dec)
		return
	}
	w.applyStatus(dec)
	w.applyDesired(dec)
}

func (w *world) applyStatus(dec Decision) {
	a := maps.Clone(w.o.Annotations)
	a[AnnotationStatus] = dec.Status.Encode()
	for _, k := range dec.RemoveAnnotations {
		delete(a, k)
	}
	w.o.Annotations = a
	w.events = append(w.events, dec.Events...)
}

func (w *world) applyDesired(dec Decision) {
	ds := dec.Desired
	if ds == nil {
		return
	}
	if ds.Offboard && ds.DeleteRest {
		w.weight, w.stableHash, w.canaryRepl, w.canaryRev = nil, "", 0, ""
		delete(w.o.Annotations, AnnotationStatus)
		w.o.Paused = false
		return
	}
	w.o.Paused = ds.Paused
	if ds.CanaryTemplate && w.canaryRev != w.o.Revision {
		w.canaryRev, w.canaryRdy = w.o.Revision, 0 // new pods, not ready yet
	}
	if w.canaryRev != "" || ds.CanaryTemplate {
		w.canaryRepl = ds.CanaryReplicas
	}
	w.stableHash = ds.StableHash
	if ds.Offboard && ds.DeleteSplit {
		w.weight = nil
		return
	}
	if ds.SkipSplit && w.weight == nil {
		return
	}
	if w.loseWrites > 0 && w.weight != nil && *w.weight != ds.Weight {
		w.loseWrites--
		return
	}
	if w.weight == nil || *w.weight != ds.Weight {
		if w.weight != nil && *w.weight != ds.Weight {
			w.checkStepSpacing(ds.Weight)
			// A fall must go through 0 (the canary's pods may change under
			// it), but for the canary's own revision coming back from all
			// traffic (guardCapacity's 1000m while stable had no endpoint).
			recovered := *w.weight == 1000 && w.canaryRev == w.status().Revision
			if ds.Weight > 0 && ds.Weight < *w.weight && !recovered {
				w.t.Errorf("at %s canary weight fell from %dm to %dm without going back to stable first",
					w.now.Format(time.TimeOnly), *w.weight, ds.Weight)
			}
		}
		v := ds.Weight
		w.weight = &v
		w.lastChange, w.lastWeight = w.now, v
	}
	w.checkInvariants()
}

// checkStepSpacing: a step up is never applied sooner than interval after
// the previous change of weight.
func (w *world) checkStepSpacing(next int) {
	spec, _ := ParseSpec(w.o.Annotations, w.o.Defaults)
	if next > w.lastWeight && next < 1000 && w.lastWeight > 0 && w.now.Sub(w.lastChange) < spec.Interval {
		w.t.Errorf("step to %dm applied %s after the previous one (interval %s)", next, w.now.Sub(w.lastChange), spec.Interval)
	}
}

func (w *world) checkInvariants() {
	w.observe()
	if w.weight == nil {
		return
	}
	if *w.weight < 0 || *w.weight > 1000 {
		w.t.Errorf("weight %d outside 0..1000", *w.weight)
	}
	if *w.weight > 0 && w.o.CanaryEndpoints == 0 {
		w.t.Errorf("at %s canary weight %dm with no ready canary endpoint", w.now.Format(time.TimeOnly), *w.weight)
	}
	if *w.weight < 1000 && w.o.StableEndpoints == 0 {
		w.t.Errorf("at %s stable weight %dm with no ready stable endpoint", w.now.Format(time.TimeOnly), 1000-*w.weight)
	}
}

// progress lets the simulated controllers catch up with what was written.
func (w *world) progress() {
	o := &w.o
	w.canaryRdy = w.canaryRepl
	if w.canaryDown {
		w.canaryRdy = 0
	}
	// The Deployment controller: unpaused, foo rolls to its template at once.
	if !o.Paused {
		h := w.hashes[o.Revision]
		cur := o.ReplicaSets[len(o.ReplicaSets)-1]
		if cur.Hash != h {
			o.ReplicaSets = []ReplicaSet{{Hash: h, Revision: o.Revision, Replicas: o.Replicas, Available: o.Replicas}}
			w.promotedTo = append(w.promotedTo, o.Revision)
		}
		o.Rollout = DeploymentRollout{ObservedCurrent: true, Updated: o.Replicas, Available: o.Replicas, Total: o.Replicas}
	} else {
		o.Rollout.ObservedCurrent = true
		o.Rollout.Updated = 0
		for _, rs := range o.ReplicaSets {
			if rs.Revision == o.Revision {
				o.Rollout.Updated = rs.Replicas
			}
		}
	}
}

// observe fills the snapshot from the world as it is.
func (w *world) observe() {
	o := &w.o
	o.Canary = nil
	o.CanaryEndpoints = 0
	if w.canaryRev != "" {
		rdy := min(w.canaryRdy, w.canaryRepl)
		o.Canary = &Canary{Revision: w.canaryRev, Replicas: w.canaryRepl, Ready: rdy, Current: true}
		o.CanaryEndpoints = int(rdy)
	}
	o.StableServiceHash = w.stableHash
	o.StableEndpoints = 0
	for _, rs := range o.ReplicaSets {
		if rs.Hash == w.stableHash && !w.stableDown {
			o.StableEndpoints += int(rs.Available)
		}
	}
	o.Weight = nil
	if w.weight != nil {
		v := *w.weight
		o.Weight = &v
	}
}

// matches says whether the world already is as ds wants it.
func (w *world) matches(ds *Desired) bool {
	if ds == nil {
		return true
	}
	return w.weight != nil && *w.weight == ds.Weight && w.o.Paused == ds.Paused && w.stableHash == ds.StableHash &&
		(w.canaryRev == "" && !ds.CanaryTemplate || w.canaryRepl == ds.CanaryReplicas) &&
		(!ds.CanaryTemplate || w.canaryRev == w.o.Revision)
}

func (w *world) reasons() []string {
	var r []string
	for _, e := range w.events {
		r = append(r, e.Reason)
	}
	return r
}

func (w *world) hasEvent(reason string) bool {
	for _, e := range w.events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

func phaseIs(p Phase) func(Status) bool { return func(s Status) bool { return s.Phase == p } }

func fail(final bool) func(analysis.Target) *analysis.Result {
	return func(analysis.Target) *analysis.Result {
		return &analysis.Result{Verdict: analysis.Fail, Final: final, Reason: "success rate 90% < 99%"}
	}
}

func verdictOf(v analysis.Verdict) func(analysis.Target) *analysis.Result {
	return func(analysis.Target) *analysis.Result {
		return &analysis.Result{Verdict: v, NotWorse: v == analysis.Pass, Reason: fmt.Sprint(v)}
	}
}
