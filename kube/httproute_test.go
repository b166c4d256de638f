package kube

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/canaryd/canaryd/rollout"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite kube/testdata golden files")

var routeGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

func fooDeployment(annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "foo", Namespace: "shop", UID: "foo-uid", Annotations: annotations}}
}

func abFoo(match string) map[string]string {
	return map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute, rollout.KeyMatch: match}
}

func mustMatch(t *testing.T, v string) *rollout.Match {
	t.Helper()
	m, err := rollout.ParseMatch(v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHTTPRouteObjectsMatchTheirGoldenFiles pins the routes canaryd writes;
// the e2e suite proves the same objects are accepted by the real API server's
// CRD validation and routed by the mesh simulator.
func TestHTTPRouteObjectsMatchTheirGoldenFiles(t *testing.T) {
	for name, tc := range map[string]struct {
		version string
		milli   int
		match   string
	}{
		"weighted-idle":        {milli: 0},
		"weighted-step":        {milli: 200},
		"weighted-promotion":   {milli: 1000},
		"ab-header":            {milli: rollout.ABWeight, match: "header:X-Canary=always"},
		"ab-cookie":            {milli: rollout.ABWeight, match: "cookie:beta=yes"},
		"ab-path":              {milli: rollout.ABWeight, match: "path:/beta"},
		"policy-linkerd-step":  {version: "policy.linkerd.io/v1beta3", milli: 100},
		"gateway-v1beta1-step": {version: "gateway.networking.k8s.io/v1beta1", milli: 500},
	} {
		t.Run(name, func(t *testing.T) {
			res := routeGVR
			if tc.version != "" {
				var err error
				if res, err = httpRouteGVR(tc.version, nil); err != nil {
					t.Fatal(err)
				}
			}
			r := &httpRouteRouter{res: res}
			var m *rollout.Match
			if tc.match != "" {
				m = mustMatch(t, tc.match)
			}
			u := r.object(fooDeployment(nil), wantShape("foo", 80, tc.milli, m))
			got, err := yaml.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "httproute-"+name+".yaml")
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./kube -run Golden -update-golden to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// defaulted is what the API server stores for canaryd's A/B header route:
// the CRD fills in each match's path and each header match's type.
const defaulted = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: foo, namespace: shop, labels: {canaryd.io/managed-by: foo}}
spec:
  parentRefs: [{group: core, kind: Service, name: foo, port: 80}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
      headers: [{name: X-Canary, value: always}]
    backendRefs:
    - {group: "", kind: Service, name: foo-canary, port: 80, weight: 100}
    - {name: foo-stable, port: 80, weight: 0}
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: foo-stable, port: 80, weight: 100}
    - {name: foo-canary, port: 80, weight: 0}
`

func route(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	// JSON numbers decode as float64 here and as int64 from the API server;
	// the parser takes both.
	return u
}

func TestWhatTheAPIServerDefaultsReadsBackAsCanarydsShape(t *testing.T) {
	got, ok := parseShape(route(t, defaulted), "foo")
	want := wantShape("foo", 80, rollout.ABWeight, mustMatch(t, "header:x-canary=always"))
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed %+v (%v), want %+v", got, ok, want)
	}
}

// lister is a cache holding the given routes, in the form the informer
// keeps them (stripForCache).
func lister(t *testing.T, objs ...*unstructured.Unstructured) cache.GenericLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		c, err := stripForCache(o.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	return cache.NewGenericLister(idx, routeGVR.GroupResource())
}

func specOf(ann map[string]string) func(ns, name string) (rollout.Spec, bool) {
	return func(ns, name string) (rollout.Spec, bool) {
		if ann == nil {
			return rollout.Spec{}, false
		}
		s, _ := rollout.ParseSpec(ann, rollout.DefaultSpec())
		return s, true
	}
}

func TestObserveReadsWeightsAndOnlyTheConfiguredMatch(t *testing.T) {
	edit := func(f func(u *unstructured.Unstructured)) *unstructured.Unstructured {
		u := route(t, defaulted)
		f(u)
		return u
	}
	weighted := (&httpRouteRouter{res: routeGVR}).object(fooDeployment(nil), wantShape("foo", 80, 200, nil))
	for name, tc := range map[string]struct {
		route *unstructured.Unstructured
		ann   map[string]string // foo's annotations in the cache; nil: not opted in
		want  any               // int milli, or nil
	}{
		"a weighted route":                           {route: weighted, ann: map[string]string{}, want: 200},
		"the configured A/B match":                   {route: route(t, defaulted), ann: abFoo("header:x-canary=always"), want: rollout.ABWeight},
		"an A/B route of a Deployment let go":        {route: route(t, defaulted), ann: nil, want: rollout.ABWeight},
		"an A/B route after the match changed":       {route: route(t, defaulted), ann: abFoo("header:x-canary=beta"), want: nil},
		"an A/B route after A/B mode was turned off": {route: route(t, defaulted), ann: map[string]string{}, want: nil},
		"a route without canaryd's label":            {route: edit(func(u *unstructured.Unstructured) { u.SetLabels(nil) }), ann: map[string]string{}, want: nil},
		"a third backend": {route: edit(func(u *unstructured.Unstructured) {
			rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
			r := rules[1].(map[string]any)
			r["backendRefs"] = append(r["backendRefs"].([]any), map[string]any{"name": "other", "port": int64(80), "weight": int64(0)})
			_ = unstructured.SetNestedSlice(u.Object, rules, "spec", "rules")
		}), ann: map[string]string{}, want: nil},
		"weights that do not sum to 100": {route: edit(func(u *unstructured.Unstructured) {
			rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
			rules[1].(map[string]any)["backendRefs"].([]any)[1].(map[string]any)["weight"] = int64(5)
			_ = unstructured.SetNestedSlice(u.Object, rules, "spec", "rules")
		}), ann: map[string]string{}, want: nil},
		"a parent of another kind": {route: edit(func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"name": "gw", "kind": "Gateway", "group": "gateway.networking.k8s.io"}}, "spec", "parentRefs")
		}), ann: map[string]string{}, want: nil},
	} {
		t.Run(name, func(t *testing.T) {
			r := &httpRouteRouter{res: routeGVR, spec: specOf(tc.ann)}
			got, err := r.observe(lister(t, tc.route), "shop", "foo")
			if err != nil {
				t.Fatal(err)
			}
			switch want := tc.want.(type) {
			case nil:
				if got != nil {
					t.Errorf("observed %d, want nothing of canaryd's shape", *got)
				}
			case int:
				if got == nil || *got != want {
					t.Errorf("observed %v, want %d", got, want)
				}
			}
		})
	}
}

func withStatus(u *unstructured.Unstructured, generation int64, parents ...any) *unstructured.Unstructured {
	u = u.DeepCopy()
	u.SetGeneration(generation)
	_ = unstructured.SetNestedSlice(u.Object, parents, "status", "parents")
	return u
}

func parentStatus(name string, port int64, cond map[string]any) any {
	return map[string]any{
		"parentRef":      map[string]any{"group": "core", "kind": "Service", "name": name, "port": port},
		"controllerName": "linkerd.io/policy-controller",
		"conditions":     []any{cond},
	}
}

func cond(status, reason string, observed int64) map[string]any {
	c := map[string]any{"type": "Accepted", "status": status, "reason": reason, "message": "", "lastTransitionTime": "2026-11-25T12:00:00Z"}
	if observed > 0 {
		c["observedGeneration"] = observed
	}
	return c
}

func TestTheWeightCountsOnlyOnceTheRouteIsAcceptedWhenRequired(t *testing.T) {
	base := (&httpRouteRouter{res: routeGVR}).object(fooDeployment(nil), wantShape("foo", 80, 200, nil))
	for name, tc := range map[string]struct {
		route *unstructured.Unstructured
		state acceptanceState
		why   string
	}{
		"no status yet": {route: withStatus(base, 2), state: pending},
		"accepted without observedGeneration, as Linkerd writes it": {
			route: withStatus(base, 2, parentStatus("foo", 80, cond("True", "Accepted", 0))), state: accepted},
		"accepted at the current generation": {
			route: withStatus(base, 2, parentStatus("foo", 80, cond("True", "Accepted", 2))), state: accepted},
		"accepted at an older generation": {
			route: withStatus(base, 3, parentStatus("foo", 80, cond("True", "Accepted", 2))), state: pending},
		"rejected": {
			route: withStatus(base, 2, parentStatus("foo", 80, cond("False", "NoMatchingParent", 2))), state: rejected,
			why: "NoMatchingParent (linkerd.io/policy-controller)"},
		"rejected at an older generation": {
			route: withStatus(base, 3, parentStatus("foo", 80, cond("False", "NoMatchingParent", 2))), state: pending},
		"accepted for another parent only": {
			route: withStatus(base, 2, parentStatus("bar", 80, cond("True", "Accepted", 0))), state: pending},
		"accepted for another port only": {
			route: withStatus(base, 2, parentStatus("foo", 81, cond("True", "Accepted", 0))), state: pending},
		"one controller accepts, another rejects": {
			route: withStatus(base, 2, parentStatus("foo", 80, cond("False", "NotAllowedByListeners", 0)), parentStatus("foo", 80, cond("True", "Accepted", 0))),
			state: accepted},
	} {
		t.Run(name, func(t *testing.T) {
			shape, _ := parseShape(tc.route, "foo")
			state, why := acceptance(tc.route, shape)
			if state != tc.state || why != tc.why {
				t.Fatalf("acceptance %v %q, want %v %q", state, why, tc.state, tc.why)
			}
			r := &httpRouteRouter{res: routeGVR, requireAccepted: true, spec: specOf(map[string]string{})}
			got, _ := r.observe(lister(t, tc.route), "shop", "foo")
			if (got != nil) != (tc.state == accepted) {
				t.Errorf("observed %v with acceptance %v", got, tc.state)
			}
		})
	}
}

func TestApplyWritesOnlyWhatDiffersAndCarriesTheResourceVersion(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{routeGVR: "HTTPRouteList"})
	foo := fooDeployment(abFoo("cookie:beta=yes"))
	apex := parent{Name: "foo", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}
	r := &httpRouteRouter{dyn: dyn, res: routeGVR, defaults: rollout.DefaultSpec(), spec: specOf(foo.Annotations)}
	ctx := context.Background()
	// The fake tracker keeps no resourceVersions: the cached copy gets rv,
	// when there is one, to see that an update sends exactly it.
	cached := func(rv string) (cache.GenericLister, string) {
		u, err := dyn.Resource(routeGVR).Namespace("shop").Get(ctx, "foo", metav1.GetOptions{})
		if err != nil {
			return lister(t), ""
		}
		u.SetResourceVersion(rv)
		return lister(t, u), rv
	}
	steps := []struct {
		milli int
		write bool
	}{{0, true}, {0, false}, {rollout.ABWeight, true}, {rollout.ABWeight, false}, {1000, true}, {0, true}}
	for i, s := range steps {
		l, rv := cached(fmt.Sprintf("rv-%d", i))
		wrote, err := r.apply(ctx, l, foo, apex, s.milli)
		if err != nil || wrote != s.write {
			t.Fatalf("step %d (%dm): wrote %v, %v; want wrote %v", i, s.milli, wrote, err, s.write)
		}
		after, _ := cached("")
		got, err := r.observe(after, "shop", "foo")
		if err != nil || got == nil || *got != s.milli {
			t.Fatalf("step %d: observed %v after applying %dm", i, got, s.milli)
		}
		if wrote && rv != "" {
			var sent string
			for _, a := range dyn.Actions() {
				if u, ok := a.(k8stesting.UpdateAction); ok {
					sent = u.GetObject().(*unstructured.Unstructured).GetResourceVersion()
				}
			}
			if sent != rv {
				t.Errorf("step %d: the update carried resourceVersion %q, want the cached %q", i, sent, rv)
			}
		}
	}
	u, _ := dyn.Resource(routeGVR).Namespace("shop").Get(ctx, "foo", metav1.GetOptions{})
	if u.GetLabels()[rollout.LabelManaged] != "foo" || len(u.GetOwnerReferences()) != 1 || u.GetOwnerReferences()[0].UID != "foo-uid" {
		t.Errorf("route metadata: labels %v owners %v", u.GetLabels(), u.GetOwnerReferences())
	}
}

func TestACreateMeetingSomeoneElsesRouteIsAConflict(t *testing.T) {
	theirs := (&httpRouteRouter{res: routeGVR}).object(fooDeployment(nil), wantShape("foo", 80, 0, nil))
	theirs.SetLabels(map[string]string{"team": "payments"})
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{routeGVR: "HTTPRouteList"}, theirs)
	r := &httpRouteRouter{dyn: dyn, res: routeGVR, spec: specOf(map[string]string{})}
	_, err := r.apply(context.Background(), lister(t), fooDeployment(nil), parent{Name: "foo", Ports: []corev1.ServicePort{{Port: 80}}}, 0)
	var conflict conflictError
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "not canaryd's") {
		t.Fatalf("apply over a foreign route: %v, want a conflict naming it", err)
	}
}

func TestTheHTTPRouteVersionIsConfiguredOrDiscovered(t *testing.T) {
	d := &fakediscovery.FakeDiscovery{Fake: &fake.NewSimpleClientset().Fake}
	d.Resources = []*metav1.APIResourceList{
		{GroupVersion: "policy.linkerd.io/v1beta3", APIResources: []metav1.APIResource{{Name: "httproutes"}}},
		{GroupVersion: "gateway.networking.k8s.io/v1beta1", APIResources: []metav1.APIResource{{Name: "httproutes"}}},
	}
	if got, _ := httpRouteGVR("", d); got.GroupVersion().String() != "gateway.networking.k8s.io/v1beta1" {
		t.Errorf("discovered %v, want the newest Gateway API version served", got)
	}
	if got, _ := httpRouteGVR("policy.linkerd.io/v1beta3", d); got.Group != "policy.linkerd.io" || got.Resource != "httproutes" {
		t.Errorf("configured: %v", got)
	}
	if _, err := httpRouteGVR("gateway.networking.k8s.io/v2", d); err == nil || !strings.Contains(err.Error(), "policy.linkerd.io/v1beta3") {
		t.Errorf("an unknown version: %v, want an error listing the allowed ones", err)
	}
	d.Resources = nil
	if got, _ := httpRouteGVR("", d); got != routeGVR {
		t.Errorf("nothing served: %v, want v1 (its absence is then reported per Deployment)", got)
	}
}
