package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/canaryd/canaryd/rollout"
)

// What keeps an HTTPRoute from carrying weights, on the real API server: a
// ServiceProfile on the apex, and a route its policy controller has not
// accepted (the test plays the policy controller, writing the route's status
// subresource as Linkerd's would).

var profileGVR = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}

func TestAServiceProfileOnTheApexHoldsTheHTTPRouteRollout(t *testing.T) {
	f := given(t, "e2e-hr-profile").app(httpRouteApp, healthy).canaryd()
	ra := startRouteAuditor(f)
	f.routeAdopted(ra)

	f.deploy("example.com/web:2.0", healthy)
	f.waitStatus("step 1", time.Minute, func(s rollout.Status) bool { return s.Step == 1 })
	name := f.name + "." + f.ns + ".svc.cluster.local"
	sp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
		"metadata": map[string]any{"name": name, "namespace": f.ns},
		"spec": map[string]any{"routes": []any{map[string]any{
			"name": "GET /", "condition": map[string]any{"method": "GET", "pathRegex": "/"}, "isRetryable": true,
		}}},
	}}
	if _, err := env.dyn.Resource(profileGVR).Namespace(f.ns).Create(f.ctx, sp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := f.waitEvent("RouteBlocked", 30*time.Second)
	held := f.waitStatus("the hold in the status", 10*time.Second, func(s rollout.Status) bool { return strings.Contains(s.Message, name) })
	if ev.Type != "Warning" || !strings.Contains(ev.Message, "ServiceProfile "+name) || !strings.Contains(ev.Message, fmt.Sprintf("holding at step %d/3", held.Step)) {
		t.Errorf("event %s %q: want a Warning naming the ServiceProfile and the step", ev.Type, ev.Message)
	}
	weight := fmt.Sprint(held.Weight)
	f.waitFor("the auditor sees the held weight", 5*time.Second, func() (bool, error) { return ra.last() == weight, nil })

	// Three intervals later the rollout has not moved, and said so once.
	time.Sleep(3 * interval)
	st, err := f.tryStatus()
	if err != nil || st.Phase != rollout.PhaseProgressing || st.Step != held.Step || ra.last() != weight {
		t.Fatalf("while held: %+v (%v), route %s; held at step %d, route %s", st, err, ra.last(), held.Step, weight)
	}
	if !st.StepStartedAt.Equal(*held.StepStartedAt) {
		t.Errorf("the held step's clock moved: %v → %v", held.StepStartedAt, st.StepStartedAt)
	}
	if n := len(f.events("RouteBlocked")); n != 1 {
		t.Errorf("%d RouteBlocked events, want 1", n)
	}

	// Without it, the rollout resumes, and the step starts afresh.
	if err := env.dyn.Resource(profileGVR).Namespace(f.ns).Delete(f.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	heldFor := resumed.Sub(*held.StepStartedAt)
	f.waitEvent("RouteUnblocked", 30*time.Second)
	st2 := f.waitStatus("step 2", time.Minute, func(s rollout.Status) bool { return s.Step == 2 })
	if gap := time.Since(resumed); gap < interval-time.Second {
		t.Errorf("step 2 came %s after the profile went, want the full %s interval", gap.Round(100*time.Millisecond), interval)
	}
	f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
	t.Logf("held at step %d for %s (interval %s); the next step came %s after the profile went",
		held.Step, heldFor.Round(100*time.Millisecond), interval, st2.StepStartedAt.Sub(resumed).Round(100*time.Millisecond))
}

// acceptRoutes plays Linkerd's policy controller: it marks every generation
// of the app's route Accepted, with observedGeneration, until the returned
// stop is called.
func acceptRoutes(ctx context.Context, t *testing.T, ns, app string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := setAccepted(ctx, ns, app, "True", "Accepted"); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
				t.Logf("policy controller stand-in: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// setAccepted writes status.parents for the apex parent, unless it already
// says status for the route's current generation.
func setAccepted(ctx context.Context, ns, app, status, reason string) error {
	routes := env.dyn.Resource(routeGVR).Namespace(ns)
	u, err := routes.Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	if len(parents) == 1 {
		conds, _, _ := unstructured.NestedSlice(parents[0].(map[string]any), "conditions")
		c, _ := conds[0].(map[string]any)
		if c["status"] == status && c["observedGeneration"] == u.GetGeneration() {
			return nil
		}
	}
	parent := map[string]any{
		"parentRef":      map[string]any{"group": "core", "kind": "Service", "name": app, "port": int64(80)},
		"controllerName": "linkerd.io/policy-controller",
		"conditions": []any{map[string]any{
			"type": "Accepted", "status": status, "reason": reason, "message": "written by the e2e test",
			"observedGeneration": u.GetGeneration(), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}},
	}
	if err := unstructured.SetNestedSlice(u.Object, []any{parent}, "status", "parents"); err != nil {
		return err
	}
	_, err = routes.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

func TestWithAcceptanceRequiredAStepWaitsForTheRouteToBeAccepted(t *testing.T) {
	f := given(t, "e2e-hr-accepted").app(httpRouteApp, healthy).canaryd("--httproute-require-accepted")
	ra := startRouteAuditor(f)
	stop := acceptRoutes(f.ctx, t, f.ns, f.name)
	f.routeAdopted(ra)
	f.waitFor("the route at 0 accepted", 30*time.Second, func() (bool, error) {
		return setAccepted(f.ctx, f.ns, f.name, "True", "Accepted") == nil, nil
	})
	stop() // from here on, nothing accepts the route's next generations

	f.deploy("example.com/web:2.0", healthy)
	f.waitFor("the route at 100m", time.Minute, func() (bool, error) { return ra.last() == "100", nil })
	time.Sleep(3 * interval)
	st, _ := f.tryStatus()
	if st.Step != 1 || st.LastCheck != nil || !strings.Contains(st.Message, "applying canary weight 100m") {
		t.Fatalf("without status the step should wait, unjudged: %+v", st)
	}

	if err := setAccepted(f.ctx, f.ns, f.name, "False", "NoMatchingParent"); err != nil {
		t.Fatal(err)
	}
	ev := f.waitEvent("RouteBlocked", 30*time.Second)
	if !strings.Contains(ev.Message, "HTTPRoute web not accepted: NoMatchingParent: written by the e2e test (linkerd.io/policy-controller)") {
		t.Errorf("RouteBlocked event %q should give the status's reason", ev.Message)
	}

	defer acceptRoutes(f.ctx, t, f.ns, f.name)()
	f.waitEvent("RouteUnblocked", 30*time.Second)
	st = f.waitPhase(rollout.PhaseSucceeded, 3*time.Minute)
	if st.StableRevision != st.Revision {
		t.Errorf("after promotion: %+v", st)
	}
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
	ra.check(t)
}
