package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// behindError: the cache was behind the API server (a 409 on a write that
// carried the cached resourceVersion, a create that met an existing object).
// Nothing was overwritten; the key is looked at again with backoff.
type behindError struct{ error }

func (e behindError) Unwrap() error { return e.error }

// liveReadAfter is how many behind-errors in a row make sync read foo from
// the API server instead of the cache.
const liveReadAfter = 3

// conflictError marks a problem in the user's objects that retrying cannot
// fix (a foreign object in canaryd's way, a selector a Service cannot
// express). It is reported as a Warning event, not retried hot.
type conflictError struct{ error }

// sync reconciles one Deployment: observe, plan and run the analysis, decide,
// apply. It returns when to look again.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil // a malformed key will not become well-formed by retrying
	}
	s := c.setFor(ns)
	if s == nil {
		return 0, nil
	}
	enabled := true
	foo, err := s.deployments.Deployments(ns).Get(name)
	if err == nil && c.behindStreak(key) >= liveReadAfter {
		foo, err = c.cfg.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && foo.Labels[rollout.LabelEnabled] != "true" {
			err = apierrors.NewNotFound(appsv1.Resource("deployments"), name) // not opted in any more: offboard below
		}
	}
	if apierrors.IsNotFound(err) {
		// Not opted in (any more): look at the live object to offboard it.
		foo, err = c.cfg.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			c.forget(key) // deleted: the garbage collector removes what canaryd owned
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", key, err)
		}
		if !c.hasTraces(s, foo) {
			c.forget(key)
			return 0, nil
		}
		enabled = false
	} else if err != nil {
		return 0, fmt.Errorf("reading %s from cache: %w", key, err)
	}
	foo = foo.DeepCopy()
	if foo.DeletionTimestamp != nil || foo.Labels[rollout.LabelEnabled] != "true" {
		enabled = false
	}
	o, err := c.observe(foo, enabled)
	if err != nil {
		return 0, err
	}
	if canary, ok := rollout.PlanScrape(o); ok && !c.cfg.NoScrapeGate {
		if sp, ok := c.cfg.Analyzer.(analysis.ScrapeProber); ok {
			actx, cancel := context.WithTimeout(ctx, c.cfg.AnalysisTimeout)
			hash := ""
			if o.Canary != nil {
				hash = o.Canary.Hash
			}
			n, last, err := sp.Scraped(actx, o.Namespace, canary, hash)
			cancel()
			if err != nil {
				o.ScrapeError = err.Error()
			} else {
				o.CanaryScraped = &n
			}
			if !last.IsZero() {
				c.setProbe("scraped/"+key, last)
				o.ScrapedAt = last
			}
			c.log.Debug("canary scraped", zap.String("deployment", key), zap.Int("pods", n), zap.Error(err))
		}
	}
	if target, ok := rollout.PlanCheck(o); ok {
		actx, cancel := context.WithTimeout(ctx, c.cfg.AnalysisTimeout)
		start := time.Now()
		res := c.cfg.Analyzer.Analyze(actx, target)
		cancel()
		c.metrics.observeCheck(key, res, time.Since(start))
		o.Check = &res
		c.setProbe(key, o.Now)
		c.log.Debug("analysis", zap.String("deployment", key), zap.String("verdict", string(res.Verdict)),
			zap.Bool("final", res.Final), zap.String("reason", res.Reason), zap.Any("judge", res.Judge))
	}
	if call, ok := rollout.PlanHook(o); ok {
		res := c.callHook(ctx, key, call)
		o.Hook = &res
		c.setProbe("hook/"+key, o.Now)
		c.log.Debug("webhook", zap.String("deployment", key), zap.String("hook", string(call.Hook)),
			zap.Bool("ok", res.OK), zap.String("answer", res.Message))
	}
	dec := rollout.Decide(o)
	w := &writer{c: c, s: s, foo: foo}
	err = c.apply(ctx, w, o, dec)
	c.metrics.observeDecision(key, dec, w.writes)
	var conflict conflictError
	switch {
	case errors.Is(err, errStale), apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		// Our cache is behind the API server (often behind our own last
		// write): nothing was overwritten; decide again from a fresher view.
		// Retried with the rate limiter's backoff, and after a few in a row
		// from a live read of foo: a cache that stays behind (a stalled
		// watch) must not turn into a livelock of identical 409s.
		return 0, behindError{err}
	case errors.As(err, &conflict):
		c.emit(foo, []rollout.Event{{Warning: true, Reason: "Blocked", Message: conflict.Error()}}, dec.Status)
		return 30 * time.Second, nil
	case err != nil:
		return 0, err
	}
	if !enabled && (dec.Desired == nil || !dec.Desired.DeleteRest) {
		return 500 * time.Millisecond, nil // offboarding goes on without label events
	}
	if !enabled {
		c.forget(key)
	}
	return dec.RequeueAfter, nil
}

// apply carries out a decision: foo (status, commands, paused) first, then
// the owned objects.
func (c *Controller) apply(ctx context.Context, w *writer, o rollout.Observed, dec rollout.Decision) error {
	ds := dec.Desired
	offboardDone := ds != nil && ds.Offboard && ds.DeleteRest
	if offboardDone {
		// Everything of canaryd's goes before foo is unpaused and forgotten.
		if err := c.deleteRoutes(ctx, w.s, w.foo.Namespace, w.foo.Name, ""); err != nil {
			return err
		}
		if err := w.deleteOwned(ctx); err != nil {
			return err
		}
	}
	spec, _ := rollout.ParseSpec(o.Annotations, o.Defaults)
	apex := parent{Name: spec.Service}
	if apex.Name == "" {
		apex.Name = w.foo.Name
	}
	if dec.RouteFirst && ds != nil && !ds.Offboard && c.routeTakesEffectOnWrite(spec.Router) {
		return c.applyRouteFirst(ctx, w, o, dec, spec.Router, apex)
	}
	if err := w.patchFoo(ctx, dec, offboardDone); err != nil {
		return err
	}
	c.emit(w.foo, dec.Events, dec.Status)
	if ds == nil || offboardDone {
		return nil
	}
	if ds.Offboard {
		if ds.DeleteSplit {
			return c.deleteRoutes(ctx, w.s, w.foo.Namespace, w.foo.Name, "")
		}
		_, err := c.applySplit(ctx, w, spec.Router, apex, ds.Weight)
		return err
	}
	apex, err := w.applyBackends(ctx, ds, o.Revision, apex)
	if err != nil {
		return err
	}
	if ds.SkipSplit {
		return nil
	}
	inPlace, err := c.applySplit(ctx, w, spec.Router, apex, ds.Weight)
	if err != nil {
		return err
	}
	if !inPlace {
		return c.stampApplied(ctx, w, dec, spec.Router, ds.Weight)
	}
	// The chosen router's object is observed in place (and accepted, where
	// that is required): any other router's object goes now, not sooner, so
	// the apex is never without a route that works.
	return c.deleteRoutes(ctx, w.s, w.foo.Namespace, w.foo.Name, spec.Router)
}

// applyBackends makes foo-canary and the two Services what ds asks for, and
// returns the apex with the ports a route needs.
func (w *writer) applyBackends(ctx context.Context, ds *rollout.Desired, revision string, apex parent) (parent, error) {
	if err := w.applyCanary(ctx, ds, revision); err != nil {
		return apex, asConflict(err)
	}
	ports, err := w.applyServices(ctx, ds, apex.Name)
	if err != nil {
		return apex, asConflict(err)
	}
	apex.Ports = ports
	return apex, nil
}

// applyRouteFirst carries out a step the stored status announced
// (Decision.RouteFirst): the route first, then the status, which records the
// step as applied from the moment the route write succeeded. The step's
// critical path is one write, and the whole step two. If the route write
// fails, the status is written as an intent instead and the step goes on the
// usual way (the route follows it on the next reconcile).
func (c *Controller) applyRouteFirst(ctx context.Context, w *writer, o rollout.Observed, dec rollout.Decision, routerName string, apex parent) error {
	ds := dec.Desired
	apex, err := w.applyBackends(ctx, ds, o.Revision, apex)
	if err != nil {
		return err
	}
	if _, err := c.applySplit(ctx, w, routerName, apex, ds.Weight); err != nil {
		if errors.Is(err, errStale) || apierrors.IsConflict(err) {
			return err // decided from a stale view: decide again, nothing written
		}
		if perr := w.patchFoo(ctx, dec, false); perr != nil {
			return errors.Join(err, perr)
		}
		c.emit(w.foo, dec.Events, dec.Status)
		return err
	}
	dec.Status.MarkApplied(c.cfg.Clock())
	if err := w.patchFoo(ctx, dec, false); err != nil {
		// The route carries the step; the next reconcile adopts it.
		return err
	}
	c.emit(w.foo, dec.Events, dec.Status)
	return nil
}

// stampApplied records a step written intent first (the canary's first
// step, a step after a failed route write) as applied from the moment its
// route write succeeded, in the same sync. It was left to the next sync, the
// first to see the weight in place, which under load came a second or more
// later (a queue of due keys, a 409 on foo to retry): the step then lasted
// that much longer than its interval. Where a route counts only once
// accepted, the next sync still stamps it on sight. A failed stamp is
// retried like any write, and the next sync stamps it anyway.
func (c *Controller) stampApplied(ctx context.Context, w *writer, dec rollout.Decision, routerName string, weight int) error {
	if !dec.Status.AwaitsApplied(weight) || !c.routeTakesEffectOnWrite(routerName) {
		return nil
	}
	dec.Status.MarkApplied(c.cfg.Clock())
	dec.Events, dec.RemoveAnnotations = nil, nil // emitted and removed with the intent
	return w.patchFoo(ctx, dec, false)
}

// routeTakesEffectOnWrite: a successful write of the router's object is the
// weight in place. Not so for an HTTPRoute whose weights count only once
// its status says Accepted (--httproute-require-accepted).
func (c *Controller) routeTakesEffectOnWrite(routerName string) bool {
	r, ok := c.routers[routerName]
	if !ok {
		return false
	}
	g, gated := r.(interface{ gatedByAcceptance() bool })
	return !gated || !g.gatedByAcceptance()
}

// applySplit makes the chosen router's object carry weight. It reports
// whether the object was already observed carrying it (nothing written).
func (c *Controller) applySplit(ctx context.Context, w *writer, routerName string, apex parent, weight int) (bool, error) {
	r, l, err := c.routerFor(w.s, routerName)
	if err != nil {
		return false, err
	}
	if cur, _ := r.observe(l, w.foo.Namespace, w.foo.Name); cur != nil && *cur == weight {
		return true, nil
	}
	if err := w.ensureFresh(ctx); err != nil {
		return false, err
	}
	wrote, err := r.apply(ctx, l, w.foo, apex, weight)
	if wrote {
		w.writes++
		c.log.Info("weight", zap.String("deployment", w.foo.Namespace+"/"+w.foo.Name), zap.String("router", routerName), zap.Int("canaryMilli", weight))
	}
	return false, err
}

// asConflict marks the errors retrying cannot fix.
func asConflict(err error) error {
	if err == nil || errors.Is(err, errStale) {
		return err
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return err // API errors are worth retrying
	}
	if strings.Contains(err.Error(), "not canaryd's") || strings.Contains(err.Error(), "selector") || strings.Contains(err.Error(), "ports") {
		return conflictError{err}
	}
	return err
}

// hasTraces: a Deployment that is not opted in still carries canaryd's
// status or has objects canaryd made for it, so it must be offboarded.
func (c *Controller) hasTraces(s *informerSet, foo *appsv1.Deployment) bool {
	if _, ok := foo.Annotations[rollout.AnnotationStatus]; ok {
		return true
	}
	if _, err := s.owned.Deployments(foo.Namespace).Get(canaryName(foo.Name)); err == nil {
		return true
	}
	if c.hasRoute(s, foo.Namespace, foo.Name) {
		return true
	}
	for _, n := range []string{stableName(foo.Name), canaryName(foo.Name)} {
		if svc, err := s.services.Services(foo.Namespace).Get(n); err == nil && isOurs(svc, foo.Name) {
			return true
		}
	}
	return false
}

// callHook calls a webhook. The post-rollout notice is delivered at least
// once: a sync whose status write loses to a stale cache runs again, so the
// answer is remembered here and not asked twice by this process (a restart
// between the call and the status write may still repeat it).
func (c *Controller) callHook(ctx context.Context, key string, call rollout.HookCall) rollout.HookResult {
	once := call.Hook == rollout.HookPostRollout
	sent := key + "/" + call.Payload.Revision + "/" + string(call.Payload.Phase)
	if once {
		c.mu.Lock()
		r, done := c.posted[key]
		c.mu.Unlock()
		if done && r.key == sent {
			return r.result
		}
	}
	res := c.hooks.call(ctx, call)
	if once {
		c.mu.Lock()
		c.posted[key] = postedHook{key: sent, result: res}
		c.mu.Unlock()
	}
	return res
}

type postedHook struct {
	key    string
	result rollout.HookResult
}

func (c *Controller) forget(key string) {
	c.setProbe(key, time.Time{})
	c.noteWritten(key, "")
	c.setProbe("hook/"+key, time.Time{})
	c.setProbe("scraped/"+key, time.Time{})
	c.metrics.forget(key)
}

// emit raises each event on foo and logs it: every decision a user can see
// leaves both.
func (c *Controller) emit(foo *appsv1.Deployment, events []rollout.Event, st rollout.Status) {
	for _, e := range events {
		typ := corev1.EventTypeNormal
		log := c.log.Info
		if e.Warning {
			typ, log = corev1.EventTypeWarning, c.log.Warn
		}
		c.rec.Event(foo, typ, e.Reason, e.Message)
		log(e.Message, zap.String("deployment", foo.Namespace+"/"+foo.Name), zap.String("reason", e.Reason),
			zap.String("phase", string(st.Phase)), zap.Int("weight", st.Weight))
		if c.cfg.Notify != nil {
			c.cfg.Notify(foo.Namespace, foo.Name, e, st)
		}
	}
}
