package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// splitGVR is the TrafficSplit canaryd writes by default (--smi-version v1alpha1).
var splitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}

// How often the watcher samples: status, split and Events every tick (cheap
// reads from a loopback API server); Prometheus every second, its scrape
// interval; and an unchanged state is re-printed with fresh numbers at most
// every liveEvery, so a step's metrics are seen moving without a flood.
const (
	tick      = 250 * time.Millisecond
	promEvery = time.Second
	liveEvery = 2500 * time.Millisecond
)

// snapshot is what the watcher read in one tick.
type snapshot struct {
	d      *appsv1.Deployment
	st     rollout.Status
	weight int // canary weight in the TrafficSplit, milli; -1: no split
	// steps and maxFailures come from podinfo's annotations over canaryd's
	// built-in defaults, which the demo does not change by flag.
	steps       int
	maxFailures int
}

// watcher prints the live view: a row whenever the rollout's state changes
// (or, at most every liveEvery, when only the numbers do), canaryd's Events
// as they arrive, and status messages as they change.
type watcher struct {
	e *env
	p *printer

	start time.Time // rows show the time since this (the bump)
	since time.Time // start of the live sequential counts (Target.Since)

	seen    map[types.UID]int32 // Events printed, by UID, with the count printed
	live    analysis.Result
	liveAt  time.Time
	lastKey string
	lastMsg string
	lastRow time.Time
	checkAt time.Time // time of the last status lastCheck seen
}

func newWatcher(e *env, p *printer) *watcher {
	now := time.Now()
	return &watcher{e: e, p: p, start: now, since: now, seen: map[types.UID]int32{}, live: noLive()}
}

func noLive() analysis.Result {
	nan := analysis.Numbers{Requests: math.NaN(), SuccessRate: math.NaN(), LatencyP99Ms: math.NaN()}
	return analysis.Result{Canary: nan, Stable: nan}
}

// adoption waits for canaryd to adopt podinfo (Idle behind a split at
// stable 100 %) and for Prometheus to have stable's numbers, which the
// first rollout's analysis compares the canary with.
func (w *watcher) adoption(ctx context.Context) error {
	w.p.println(w.p.style(dim, fmt.Sprintf("canary, stable: success rate, p99 latency and requests over the last %s (or since", interval)))
	w.p.println(w.p.style(dim, "the bump), from Prometheus by canaryd's own analysis queries; weight: the canary's, in the split"))
	w.p.println(w.p.header())
	_, err := w.until(ctx, readyTimeout, "canaryd to adopt podinfo", func(s snapshot) bool {
		return s.st.Phase == rollout.PhaseIdle && s.weight == 0
	})
	if err != nil {
		return err
	}
	_, err = w.until(ctx, readyTimeout, "Prometheus to have podinfo's numbers", func(snapshot) bool {
		return w.live.Stable.Requests > 0 && w.liveAt.After(w.lastRow)
	})
	if err != nil {
		return err
	}
	w.row(w.last(ctx), "baseline")
	return nil
}

// last samples once more, for a final row.
func (w *watcher) last(ctx context.Context) snapshot {
	s, _ := w.sample(ctx)
	return s
}

// rollout bumps podinfo from one version to another and shows it live
// until canaryd has promoted or rolled it back.
func (w *watcher) rollout(ctx context.Context, from, to version) (outcome, error) {
	o := outcome{Name: fmt.Sprintf("%s -> %s (%s)", from.tag, to.tag, map[bool]string{true: "good", false: "bad"}[to.good]), Good: to.good}
	before, err := w.sample(ctx)
	if err != nil {
		return o, err
	}
	prev := before.st.Revision
	if prev == "" {
		prev = before.st.StableRevision
	}
	w.p.heading(fmt.Sprintf("Bump %s to %s: %s", app, to.image(), to.describe()))
	w.p.println(w.p.header())
	r0, f0, a0 := traffic(w.e.sim.Stats())
	// Stable's numbers carry over until the next query; the canary's are
	// the previous canary's, not this one's, so they go.
	w.start, w.since, w.lastKey = time.Now(), time.Now(), ""
	w.live.Canary = noLive().Canary
	if err := bump(ctx, w.e, to); err != nil {
		return o, err
	}
	s, err := w.until(ctx, rolloutTimeout, "the rollout to end", func(s snapshot) bool {
		ended := s.st.Phase == rollout.PhaseSucceeded || s.st.Phase == rollout.PhaseFailed
		return ended && s.st.Revision != "" && s.st.Revision != prev
	})
	o.Took = time.Since(w.start)
	r1, f1, a1 := traffic(w.e.sim.Stats())
	o.CanaryRequests, o.CanaryFailures, o.AllFailures = r1-r0, f1-f0, a1-a0
	switch {
	case errors.Is(err, errTimeout):
		o.Reason = fmt.Sprintf("no promotion or rollback within %s; phase %s: %s", rolloutTimeout, s.st.Phase, s.st.Message)
		return o, nil
	case err != nil:
		return o, err
	}
	o.Phase = s.st.Phase
	if c := s.st.LastCheck; c != nil && c.Reason != "" {
		o.Reason = c.Reason
	} else {
		o.Reason = s.st.Message
	}
	wantPhase := map[bool]rollout.Phase{true: rollout.PhaseSucceeded, false: rollout.PhaseFailed}[to.good]
	o.OK = o.Phase == wantPhase
	if o.OK {
		if bad := verify(s, to); bad != "" {
			o.OK, o.Reason = false, "status says "+o.result()+", but "+bad
		}
	}
	return o, nil
}

// until samples every tick, printing what changed, until done holds.
func (w *watcher) until(ctx context.Context, timeout time.Duration, what string, done func(snapshot) bool) (snapshot, error) {
	deadline := time.Now().Add(timeout)
	var s snapshot
	var last error
	for {
		if err := w.e.canarydGone(); err != nil {
			return s, err
		}
		next, err := w.sample(ctx)
		if err == nil {
			s = next
			w.events(ctx)
			if time.Since(w.liveAt) >= promEvery {
				w.refreshLive(ctx)
			}
			w.show(s)
			if done(s) {
				return s, nil
			}
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("waiting for %s: %w after %s (phase %q, last error: %w)", what, errTimeout, timeout, s.st.Phase, last)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(tick):
		}
	}
}

func (w *watcher) sample(ctx context.Context) (snapshot, error) {
	d, err := w.e.client.AppsV1().Deployments(namespace).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return snapshot{}, fmt.Errorf("reading Deployment %s: %w", app, err)
	}
	st, err := rollout.ParseStatus(d.Annotations[rollout.AnnotationStatus])
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{d: d, st: st, weight: -1}
	if spec, err := rollout.ParseSpec(d.Annotations, rollout.DefaultSpec()); err == nil {
		s.steps, s.maxFailures = len(spec.Steps), spec.MaxFailures
	}
	if s.weight, err = w.splitWeight(ctx); err != nil {
		return snapshot{}, err
	}
	return s, nil
}

// splitWeight reads the canary's weight from the TrafficSplit itself: the
// weight the mesh routes by, which may lag the status for a moment.
func (w *watcher) splitWeight(ctx context.Context) (int, error) {
	u, err := w.e.dyn.Resource(splitGVR).Namespace(namespace).Get(ctx, app, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return -1, nil // no split yet (before adoption) is a state, not a failure
	}
	if err != nil {
		return -1, fmt.Errorf("reading TrafficSplit %s: %w", app, err)
	}
	backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
	for _, b := range backends {
		m, _ := b.(map[string]any)
		if m["service"] != canary {
			continue
		}
		q, err := resource.ParseQuantity(fmt.Sprint(m["weight"]))
		if err != nil {
			return -1, fmt.Errorf("TrafficSplit %s: canary weight %v: %w", app, m["weight"], err)
		}
		return int(q.MilliValue()), nil
	}
	return 0, nil
}

// refreshLive asks Prometheus about canary and stable, through canaryd's own
// analysis package: the same PromQL, the same label selection, the same
// admin-port exclusion.
//
// The window is the last interval, but never reaching back before the
// bump: the canary's series are labelled deployment="podinfo-canary" in
// every rollout, so a 5 s window 0.3 s after the second bump would show the
// previous canary's traffic as this one's. Prometheus needs two scrapes
// (2 s) for a rate; until then the canary's columns stay empty. Stable is
// one continuous workload and is shown from the start.
func (w *watcher) refreshLive(ctx context.Context) {
	const minWindow = 2 * time.Second
	now := time.Now()
	age := now.Sub(w.since)
	r := w.e.prom.Analyze(ctx, analysis.Target{
		Namespace: namespace, Canary: canary, Stable: app,
		Window: min(max(age, minWindow), interval), Since: w.since, Now: now,
		MinSuccessRate: 99, MaxLatencyP99: 500 * time.Millisecond, MinRequests: 5,
	})
	if age < minWindow {
		r.Canary = noLive().Canary
	}
	w.live, w.liveAt = r, now
}

// events prints canaryd's Events on podinfo not printed yet, oldest first.
// An Event repeated by the recorder (its count went up) is printed again.
func (w *watcher) events(ctx context.Context) {
	list, err := w.e.client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + app})
	if err != nil {
		return // shown on the next tick; the status rows go on meanwhile
	}
	evs := list.Items
	// LastTimestamp has one-second resolution, and the recorder folds a
	// repeated Event (same reason and message) into the old object, whose
	// name sorts first: within a second, only the order of writes tells
	// which came last. The resourceVersion is that order in practice (the
	// etcd revision); it is opaque by contract, so an unparsable one just
	// keeps the API's order.
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i].LastTimestamp, evs[j].LastTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		ra, errA := strconv.ParseUint(evs[i].ResourceVersion, 10, 64)
		rb, errB := strconv.ParseUint(evs[j].ResourceVersion, 10, 64)
		return errA == nil && errB == nil && ra < rb
	})
	for _, ev := range evs {
		if ev.Source.Component != "canaryd" && ev.ReportingController != "canaryd" {
			continue
		}
		n := max(ev.Count, 1)
		if w.seen[ev.UID] >= n {
			continue
		}
		w.seen[ev.UID] = n
		for _, l := range w.p.event(time.Since(w.start), ev.Type == "Warning", ev.Reason, ev.Message) {
			w.p.println(l)
		}
	}
}

// show prints a row when the rollout's state changed or a check decided
// something, or fresh numbers when only they changed and the last row is
// liveEvery old; and the status message when it changed.
func (w *watcher) show(s snapshot) {
	st := s.st
	key := fmt.Sprintf("%s|%d|%s|%d|%d|%d|%v", st.Phase, st.Step, st.Stage, st.Failures, st.Inconclusive, s.weight, st.Paused)
	note, checked := "", false
	if c := st.LastCheck; c != nil && !c.Time.Equal(w.checkAt) {
		w.checkAt, checked = c.Time, true
		note = string(c.Verdict)
		// A conclusive failure of the sequential test rolls back without
		// counting against max-failures; only counted ones show a count.
		if c.Verdict == analysis.Fail && st.Failures > 0 && s.maxFailures > 0 {
			note += fmt.Sprintf(" (%d/%d)", st.Failures, s.maxFailures)
		}
	}
	if note == "" && st.Stage != "" {
		note = st.Stage
	}
	switch {
	case key != w.lastKey || checked:
		w.lastKey = key
		w.row(s, note)
	case s.weight > 0 && time.Since(w.lastRow) >= liveEvery && w.liveAt.After(w.lastRow):
		w.row(s, note)
	}
	if st.Message != w.lastMsg {
		w.lastMsg = st.Message
		if st.Message != "" {
			for _, l := range w.p.message(st.Message) {
				w.p.println(l)
			}
		}
	}
}

func (w *watcher) row(s snapshot, note string) {
	w.lastRow = time.Now()
	w.p.println(w.p.formatRow(row{
		Elapsed: time.Since(w.start), Phase: s.st.Phase, Step: s.st.Step, Steps: s.steps, Weight: s.weight,
		Canary: w.live.Canary, Stable: w.live.Stable, Note: note,
	}))
}
