package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/canaryd/canaryd/rollout"
)

// The HTTPRoute router on the real API server (which validates canaryd's
// routes against the Gateway API CRD) with the mesh simulator routing by
// them.

var routeGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// routeAuditor samples the app's HTTPRoute and TrafficSplit every 100 ms. It
// records the route's state as it changes ("-" none, the canary weight in
// milli for a weighted route, "ab" for an A/B route) and breaks an invariant
// when a rule's weights do not sum to 100, when a backend with weight has
// no ready endpoint, or — once either existed — when neither object exists.
type routeAuditor struct {
	ns, app string
	cancel  context.CancelFunc
	done    chan struct{}

	mu          sync.Mutex
	splitFirst  bool // sample the TrafficSplit before the route (see sample)
	states      []string
	violations  []string
	seenRouting bool
}

func startRouteAuditor(f *fixture) *routeAuditor {
	ctx, cancel := context.WithCancel(f.ctx)
	a := &routeAuditor{ns: f.ns, app: f.name, cancel: cancel, done: make(chan struct{}), splitFirst: true}
	go func() {
		defer close(a.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				a.sample(ctx)
			}
		}
	}()
	f.t.Cleanup(a.stop)
	return a
}

func (a *routeAuditor) stop() { a.cancel(); <-a.done }

// sample reads the object being replaced first: a switch creates the new
// object before deleting the old, so if the old one is already gone when
// read, the new one exists when read just after. The other order could see
// neither without anything being wrong.
func (a *routeAuditor) sample(ctx context.Context) {
	a.mu.Lock()
	splitFirst := a.splitFirst
	a.mu.Unlock()
	var route *unstructured.Unstructured
	var split, ok bool
	if splitFirst {
		split, ok = a.exists(ctx, splitGVR)
		if ok {
			route, ok = a.route(ctx)
		}
	} else {
		route, ok = a.route(ctx)
		if ok {
			split, ok = a.exists(ctx, splitGVR)
		}
	}
	if !ok {
		return // an API hiccup is not a routing fact
	}
	state := "-"
	if route != nil {
		state = a.audit(ctx, route)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if route != nil || split {
		a.seenRouting = true
	} else if a.seenRouting {
		a.violateLocked("the apex has neither a TrafficSplit nor an HTTPRoute")
	}
	if n := len(a.states); n == 0 || a.states[n-1] != state {
		a.states = append(a.states, state)
	}
}

func (a *routeAuditor) exists(ctx context.Context, gvr schema.GroupVersionResource) (bool, bool) {
	_, err := env.dyn.Resource(gvr).Namespace(a.ns).Get(ctx, a.app, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, true
	}
	return err == nil, err == nil
}

func (a *routeAuditor) route(ctx context.Context) (*unstructured.Unstructured, bool) {
	u, err := env.dyn.Resource(routeGVR).Namespace(a.ns).Get(ctx, a.app, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, true
	}
	return u, err == nil
}

// audit checks one route and returns its state.
func (a *routeAuditor) audit(ctx context.Context, u *unstructured.Unstructured) string {
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	canary := int64(-1)
	for i, r := range rules {
		rm, _ := r.(map[string]any)
		refs, _ := rm["backendRefs"].([]any)
		var sum int64
		for _, ref := range refs {
			b, _ := ref.(map[string]any)
			w, _ := b["weight"].(int64)
			name, _ := b["name"].(string)
			sum += w
			if name == a.app+"-canary" {
				canary = w
			}
			if w == 0 {
				continue
			}
			if n, err := readyEndpoints(ctx, a.ns, name); err == nil && n == 0 {
				a.violate("rule %d: %s has weight %d and no ready endpoint", i, name, w)
			}
		}
		if sum != 100 {
			a.violate("rule %d: weights sum to %d, not 100", i, sum)
		}
	}
	if len(rules) == 2 {
		return "ab"
	}
	return strconv.FormatInt(canary*10, 10)
}

func (a *routeAuditor) violate(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.violateLocked(format, args...)
}

func (a *routeAuditor) violateLocked(format string, args ...any) {
	if len(a.violations) < 50 {
		a.violations = append(a.violations, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

// history is the route's states, without the "none yet" before the first.
func (a *routeAuditor) history() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := append([]string(nil), a.states...)
	for len(out) > 0 && out[0] == "-" {
		out = out[1:]
	}
	return out
}

func (a *routeAuditor) last() string {
	h := a.history()
	if len(h) == 0 {
		return "-"
	}
	return h[len(h)-1]
}

func (a *routeAuditor) check(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.violations {
		t.Errorf("invariant broken: %s", v)
	}
}

// routeAdopted: Idle, the HTTPRoute at stable 100 %, the Deployment paused.
func (f *fixture) routeAdopted(a *routeAuditor) *fixture {
	f.t.Helper()
	f.waitPhase(rollout.PhaseIdle, time.Minute)
	f.waitFor("HTTPRoute at stable 100%", 30*time.Second, func() (bool, error) { return a.last() == "0", nil })
	if !f.deployment().Spec.Paused {
		f.t.Fatal("the adopted Deployment is not paused")
	}
	return f
}

var httpRouteApp = map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute}

func TestAGoodImageIsPromotedThroughAnHTTPRoute(t *testing.T) {
	f := given(t, "e2e-hr-promote").app(httpRouteApp, healthy).audit().canaryd()
	ra := startRouteAuditor(f)
	f.routeAdopted(ra)

	f.deploy("example.com/web:2.0", healthy)
	st := f.waitPhase(rollout.PhaseSucceeded, 3*time.Minute)
	f.waitFor("route back at stable 100%", 30*time.Second, func() (bool, error) { return ra.last() == "0", nil })

	if want := []string{"0", "100", "200", "500", "1000", "0"}; !reflect.DeepEqual(ra.history(), want) {
		t.Errorf("route states %v, want %v", ra.history(), want)
	}
	if st.StableRevision != st.Revision || f.image() != "example.com/web:2.0" {
		t.Errorf("after promotion: %+v, image %s", st, f.image())
	}
	if w := f.auditor.weights(); !reflect.DeepEqual(w, []int{-1}) {
		t.Errorf("a TrafficSplit appeared for an httproute Deployment: %v", w)
	}
	// The simulator routed by the HTTPRoute: the canary served requests.
	if c := f.stats()[f.name+"-canary"]; c.Requests == 0 {
		t.Errorf("the canary served no request: %+v", f.stats())
	}
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
}

func TestABadImageIsRolledBackThroughAnHTTPRoute(t *testing.T) {
	f := given(t, "e2e-hr-rollback").app(httpRouteApp, healthy).canaryd()
	ra := startRouteAuditor(f)
	f.routeAdopted(ra)

	// 30 % errors: this scenario is about routing the roll-back, so the
	// canary is bad beyond any doubt (at 5 % a lucky 5 s window can pass).
	f.deploy("example.com/web:2.0-bad", map[string]string{"meshsim/error-rate": "0.3", "meshsim/latency-ms": "10"})
	st := f.waitPhase(rollout.PhaseFailed, 2*time.Minute)
	f.waitFor("route back at stable 100%", 30*time.Second, func() (bool, error) { return ra.last() == "0", nil })
	if h := ra.history(); len(h) < 3 || h[1] != "100" || h[len(h)-1] != "0" {
		t.Errorf("route states %v: want the canary at 100m, then back at 0", h)
	}
	if st.FailedRevision == "" || st.FailedRevision != st.Revision || f.deployment().Status.UpdatedReplicas != 0 {
		t.Errorf("after the roll-back: %+v, %d pods updated", st, f.deployment().Status.UpdatedReplicas)
	}
	canary := f.stats()[f.name+"-canary"]
	if canary.Requests == 0 || canary.Failures == 0 {
		t.Errorf("the bad canary should have served (and failed) some requests: %+v", canary)
	}
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
	t.Logf("bad canary behind an HTTPRoute: %d requests (%d failed) before weight 0; %s", canary.Requests, canary.Failures, st.LastCheck.Reason)
}

func TestAnABRolloutSendsOnlyMatchingRequestsToTheCanary(t *testing.T) {
	ann := map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute, rollout.KeyMatch: "header:x-canary=always", rollout.KeyIterations: "3"}
	f := given(t, "e2e-hr-ab").app(ann, healthy).canaryd()
	// 30 % of the clients' requests carry the header.
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"meshsim/headers": "x-canary=always:0.3"}}})
	if _, err := env.client.CoreV1().Services(f.ns).Patch(f.ctx, f.name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ra := startRouteAuditor(f)
	f.routeAdopted(ra)

	f.deploy("example.com/web:2.0", healthy)
	st := f.waitStatus("iteration 1", time.Minute, func(s rollout.Status) bool { return s.Step == 1 })
	if st.Weight != rollout.ABWeight {
		t.Errorf("iteration weight %d, want the notional %d", st.Weight, rollout.ABWeight)
	}
	f.waitFor("the A/B route", 10*time.Second, func() (bool, error) { return ra.last() == "ab", nil })
	time.Sleep(time.Second) // the simulator follows the route by a watch
	before := f.stats()
	f.waitStatus("iteration 3", 2*time.Minute, func(s rollout.Status) bool { return s.Step == 3 })
	after := f.stats()
	f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	f.waitFor("route back at stable 100%", 30*time.Second, func() (bool, error) { return ra.last() == "0", nil })

	if want := []string{"0", "ab", "1000", "0"}; !reflect.DeepEqual(ra.history(), want) {
		t.Errorf("route states %v, want %v", ra.history(), want)
	}
	c := after[f.name+"-canary"].Requests - before[f.name+"-canary"].Requests
	s := after[f.name+"-stable"].Requests - before[f.name+"-stable"].Requests
	share := float64(c) / float64(c+s)
	// Two 5 s iterations at 40 requests/s: ~400 requests, of which 30 % is
	// 120 ± 9 (one standard deviation), so 18–42 % is far outside chance.
	if c+s < 100 || share < 0.18 || share > 0.42 {
		t.Errorf("during two iterations the canary got %d of %d requests (%.0f%%), want about the 30%% that carry the header", c, c+s, 100*share)
	}
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
	t.Logf("A/B iterations 1–2: canary got %d of %d requests (%.1f%%) with 30%% of requests carrying x-canary: always", c, c+s, 100*share)
}

func TestSwitchingRoutersWhileIdleNeverLeavesTheApexWithoutARoute(t *testing.T) {
	f := given(t, "e2e-hr-switch").app(nil, healthy).audit().canaryd().adopted()
	ra := startRouteAuditor(f)
	f.waitFor("the auditor sees the split", 10*time.Second, func() (bool, error) {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return ra.seenRouting, nil
	})

	f.annotate(rollout.KeyRouter, rollout.RouterHTTPRoute)
	f.waitFor("HTTPRoute in place and TrafficSplit gone", 30*time.Second, func() (bool, error) {
		split, _ := ra.exists(f.ctx, splitGVR)
		return ra.last() == "0" && !split, nil
	})

	ra.mu.Lock()
	ra.splitFirst = false // now the route is the object being replaced
	ra.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	f.annotate(rollout.KeyRouter, rollout.RouterSMI)
	f.waitFor("TrafficSplit back and HTTPRoute gone", 30*time.Second, func() (bool, error) {
		split, _ := ra.exists(f.ctx, splitGVR)
		return ra.last() == "-" && split, nil
	})
	time.Sleep(time.Second)

	if st, _ := f.tryStatus(); st.Phase != rollout.PhaseIdle {
		t.Errorf("phase %s after switching routers", st.Phase)
	}
	if w := f.auditor.weights(); len(w) < 2 || w[len(w)-1] != 0 {
		t.Errorf("TrafficSplit weights %v: want it back at stable 100%%", w)
	}
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
}
