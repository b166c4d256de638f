package kube

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/canaryd/canaryd/rollout"
)

// Controller-level tests of the httproute router: adoption, switching,
// acceptance and ServiceProfiles through the informers and fake clients.

// routeRig is the controller on fake clients that serve HTTPRoutes,
// TrafficSplits and ServiceProfiles.
func newRouteRig(t *testing.T, requireAccepted bool, objs ...runtime.Object) *rig {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{
		{GroupVersion: "split.smi-spec.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "trafficsplits", Namespaced: true, Kind: "TrafficSplit"}}},
		{GroupVersion: "gateway.networking.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "httproutes", Namespaced: true, Kind: "HTTPRoute"}}},
		{GroupVersion: "linkerd.io/v1alpha2", APIResources: []metav1.APIResource{{Name: "serviceprofiles", Namespaced: true, Kind: "ServiceProfile"}}},
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		smiGVR("v1alpha1"): "TrafficSplitList", routeGVR: "HTTPRouteList", profileGVR: "ServiceProfileList"})
	rec := record.NewFakeRecorder(100)
	defaults := rollout.DefaultSpec()
	defaults.Interval = 10 * time.Second
	c, err := New(Config{Client: client, Dynamic: dyn, Analyzer: passAnalyzer{}, Defaults: defaults, Recorder: rec,
		HTTPRouteRequireAccepted: requireAccepted,
		Clock:                    func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := c.sets[""]
	s.start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		t.Fatal("caches did not sync")
	}
	return &rig{t: t, c: c, client: client, dyn: dyn, rec: rec, ctx: ctx}
}

func (r *rig) route() *unstructured.Unstructured {
	r.t.Helper()
	u, err := r.dyn.Resource(routeGVR).Namespace("shop").Get(r.ctx, "foo", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return u
}

// observed is the snapshot the controller takes of foo now.
func (r *rig) observed() rollout.Observed {
	r.t.Helper()
	o, err := r.c.observe(r.c.mustCached(r.t, "foo"), true)
	if err != nil {
		r.t.Fatal(err)
	}
	return o
}

func (r *rig) waitObserved(what string, cond func(rollout.Observed) bool) rollout.Observed {
	r.t.Helper()
	var o rollout.Observed
	for i := 0; i < 50; i++ {
		if o = r.observed(); cond(o) {
			return o
		}
		time.Sleep(20 * time.Millisecond) // fake watches deliver asynchronously
	}
	r.t.Fatalf("%s: never observed; last %+v (weight %v)", what, o.RouteBlocked, o.Weight)
	return o
}

func TestAdoptionWithTheHTTPRouteRouterWritesTheRouteOnce(t *testing.T) {
	r := newRouteRig(t, false, app(map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute})...)
	r.sync()
	r.sync()
	got, ok := parseShape(r.route(), "foo")
	if want := wantShape("foo", 80, 0, nil); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("route %+v, want %+v", got, want)
	}
	before := len(r.writes())
	r.sync()
	if after := r.writes(); len(after) != before {
		t.Fatalf("a second sync of the same state wrote %v", after[before:])
	}
	if _, err := r.dyn.Resource(smiGVR("v1alpha1")).Namespace("shop").Get(r.ctx, "foo", metav1.GetOptions{}); err == nil {
		t.Error("a TrafficSplit was written for an httproute Deployment")
	}
}

func TestSwitchingRoutersCreatesTheNewRouteBeforeDeletingTheOld(t *testing.T) {
	r := newRouteRig(t, false, app(nil)...)
	r.sync()
	r.sync() // adopted with the SMI default: the TrafficSplit exists
	foo := r.foo()
	foo.Annotations[rollout.KeyRouter] = rollout.RouterHTTPRoute
	if _, err := r.client.AppsV1().Deployments("shop").Update(r.ctx, foo, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r.sync()
	r.sync()
	created, deleted := -1, -1
	for i, w := range r.writes() {
		switch w {
		case "create httproutes/foo":
			created = i
		case "delete trafficsplits/foo":
			deleted = i
		}
	}
	if created < 0 || deleted < 0 || created > deleted {
		t.Fatalf("writes %v: want the HTTPRoute created before the TrafficSplit is deleted", r.writes())
	}
}

func TestRequiredAcceptanceHoldsTheWeightAndReportsARejection(t *testing.T) {
	r := newRouteRig(t, true, app(map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute})...)
	r.sync()
	r.sync()
	o := r.waitObserved("route in the cache", func(o rollout.Observed) bool { return r.c.hasRoute(r.c.sets[""], "shop", "foo") })
	if o.Weight != nil || o.RouteBlocked != "" {
		t.Fatalf("before any status: weight %v, blocked %q; want no weight and no block (pending)", o.Weight, o.RouteBlocked)
	}
	setStatus := func(c map[string]any) {
		u := r.route()
		_ = unstructured.SetNestedSlice(u.Object, []any{parentStatus("foo", 80, c)}, "status", "parents")
		if _, err := r.dyn.Resource(routeGVR).Namespace("shop").UpdateStatus(r.ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(cond("False", "NoMatchingParent", 0))
	o = r.waitObserved("the rejection", func(o rollout.Observed) bool { return o.RouteBlocked != "" })
	if o.Weight != nil || !strings.Contains(o.RouteBlocked, "HTTPRoute foo not accepted: NoMatchingParent") {
		t.Errorf("rejected: weight %v, blocked %q", o.Weight, o.RouteBlocked)
	}
	setStatus(cond("True", "Accepted", 0))
	o = r.waitObserved("the acceptance", func(o rollout.Observed) bool { return o.Weight != nil })
	if *o.Weight != 0 || o.RouteBlocked != "" {
		t.Errorf("accepted: weight %d, blocked %q", *o.Weight, o.RouteBlocked)
	}
}

func profile(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile", "spec": spec}}
	u.SetName(name)
	u.SetNamespace("shop")
	return u
}

func TestAServiceProfileWithRoutesBlocksTheHTTPRoute(t *testing.T) {
	r := newRouteRig(t, false, app(map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute})...)
	r.sync()
	r.sync()
	sps := r.dyn.Resource(profileGVR).Namespace("shop")
	for _, sp := range []*unstructured.Unstructured{
		profile("foo.shop.svc.cluster.local", map[string]any{}), // empty: overrides nothing
		profile("bar.shop.svc.cluster.local", map[string]any{"routes": []any{map[string]any{"name": "GET /"}}}),
	} {
		if _, err := sps.Create(r.ctx, sp, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if o := r.observed(); o.RouteBlocked != "" {
		t.Fatalf("blocked by an empty profile or another Service's: %q", o.RouteBlocked)
	}
	sp := profile("foo.shop.svc.example.org", map[string]any{"routes": []any{map[string]any{"name": "GET /"}}})
	if _, err := sps.Create(r.ctx, sp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := r.waitObserved("the profile", func(o rollout.Observed) bool { return o.RouteBlocked != "" })
	for _, want := range []string{"ServiceProfile foo.shop.svc.example.org", "routes", "HTTPRoute foo"} {
		if !strings.Contains(o.RouteBlocked, want) {
			t.Errorf("blocked %q does not say %q", o.RouteBlocked, want)
		}
	}
	// The SMI router is what linkerd-smi turns into a profile: no block.
	smi := r.c.mustCached(t, "foo")
	smi.Annotations = map[string]string{rollout.KeyRouter: rollout.RouterSMI}
	if why := r.c.routeBlocked(r.c.sets[""], smi, smi.Annotations); why != "" {
		t.Errorf("an SMI Deployment was blocked: %q", why)
	}
	if err := sps.Delete(r.ctx, sp.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitObserved("the profile gone", func(o rollout.Observed) bool { return o.RouteBlocked == "" })
}
