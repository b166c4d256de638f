package checkup

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/canaryd/canaryd/rollout"
)

// cluster is a fake API server: its objects, the resources discovery
// reports, and the access reviews it denies ("verb resource[/sub]").
type cluster struct {
	objects []runtime.Object
	served  []schema.GroupVersionResource
	deny    map[string]bool

	mu      sync.Mutex
	reviews []string
}

func (c *cluster) config(t *testing.T) Config {
	t.Helper()
	var typed, dynamic []runtime.Object
	for _, o := range c.objects {
		if _, ok := o.(*unstructured.Unstructured); ok {
			dynamic = append(dynamic, o)
		} else {
			typed = append(typed, o)
		}
	}
	client := fake.NewClientset(typed...)
	disc := client.Discovery().(*fakediscovery.FakeDiscovery)
	byGV := map[string][]metav1.APIResource{}
	for _, gvr := range c.served {
		byGV[gvr.GroupVersion().String()] = append(byGV[gvr.GroupVersion().String()], metav1.APIResource{Name: gvr.Resource, Namespaced: true})
	}
	for gv, res := range byGV {
		disc.Resources = append(disc.Resources, &metav1.APIResourceList{GroupVersion: gv, APIResources: res})
	}
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		attr := r.Spec.ResourceAttributes
		key := attr.Verb + " " + attr.Resource
		if attr.Subresource != "" {
			key += "/" + attr.Subresource
		}
		c.mu.Lock()
		c.reviews = append(c.reviews, key+"@"+attr.Namespace)
		c.mu.Unlock()
		r.Status.Allowed = !c.deny[key]
		return true, r, nil
	})
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{serviceProfiles: "ServiceProfileList"}, dynamic...)
	return Config{Client: client, Dynamic: dyn, Host: "https://127.0.0.1:6443"}
}

var (
	trafficSplits = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}
	httpRoutes    = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
)

func namespace(name string, inject string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if inject != "" {
		ns.Annotations = map[string]string{annotationInject: inject}
	}
	return ns
}

func optedIn(ns, name string, annotations, template map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{rollout.LabelEnabled: "true"}, Annotations: annotations},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: template}}},
	}
}

func profile(ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile", "spec": spec}}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func one(t *testing.T, r Report, cat, substr string) Result {
	t.Helper()
	found := r.Find(cat, substr)
	if len(found) != 1 {
		var b strings.Builder
		_ = r.Print(&b)
		t.Fatalf("want one %s result containing %q, got %d:\n%s", cat, substr, len(found), b.String())
	}
	return found[0]
}

func TestRBACReviewsEveryVerbCanarydUses(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits}, deny: map[string]bool{
		"patch events": true, "update deployments/finalizers": true}}
	cfg := c.config(t)
	cfg.Namespaces = []string{"shop", "billing"}
	cfg.Lease = &Lease{Namespace: "canaryd", Name: "canaryd"}
	r := Run(context.Background(), cfg)

	ev := one(t, r, CatRBAC, "events")
	if ev.Status != Fail || ev.Title != "cannot patch events in namespaces shop, billing" ||
		ev.Detail != "missing in namespace shop: patch\nmissing in namespace billing: patch" || !strings.Contains(ev.Hint, "verbs [create, patch]") {
		t.Errorf("events: %+v", ev)
	}
	if fin := one(t, r, CatRBAC, "finalizers"); fin.Status != Warn {
		t.Errorf("the owner-reference permission is needed only by some clusters, so a warning: %+v", fin)
	}
	if d := one(t, r, CatRBAC, "deployments.apps in"); d.Status != OK {
		t.Errorf("deployments: %+v", d)
	}
	if l := one(t, r, CatRBAC, "leases"); l.Status != OK || !strings.HasSuffix(l.Title, "in namespace canaryd") {
		t.Errorf("lease: %+v", l)
	}
	if len(r.Find(CatRBAC, "httproutes")) != 0 || len(r.Find(CatRBAC, "serviceprofiles")) != 0 {
		t.Error("resources the API server does not serve are not watched, so their permissions are not needed")
	}
	// Each verb of each needed permission, in each watched namespace (the
	// Lease only in its own), reviewed once.
	want := 0
	for _, p := range Permissions(cfg) {
		if p.IfServed != nil && *p.IfServed != trafficSplits {
			continue
		}
		n := len(cfg.Namespaces)
		if p.Namespace != "" {
			n = 1
		}
		want += len(p.Verbs) * n
	}
	if len(c.reviews) != want {
		t.Errorf("%d access reviews, want %d: %v", len(c.reviews), want, c.reviews)
	}
	if !r.Failed() {
		t.Error("a missing permission fails the report")
	}
}

func TestRoutingResourcesInUseMustBeServed(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{httpRoutes}, objects: []runtime.Object{
		namespace("shop", "enabled"),
		optedIn("shop", "web", map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute}, nil),
	}}
	r := Run(context.Background(), c.config(t))
	if ts := one(t, r, CatRouting, "TrafficSplit"); ts.Status != Fail || !strings.Contains(ts.Title, "used by the cluster default") ||
		!strings.Contains(ts.Hint, "linkerd-smi") {
		t.Errorf("the default router's resource is missing: %+v", ts)
	}
	if hr := one(t, r, CatRouting, "HTTPRoute"); hr.Status != OK || !strings.Contains(hr.Title, "shop/web") {
		t.Errorf("HTTPRoute: %+v", hr)
	}

	c = &cluster{served: []schema.GroupVersionResource{trafficSplits}}
	r = Run(context.Background(), c.config(t))
	if hr := one(t, r, CatRouting, "HTTPRoute"); hr.Status != Warn || !strings.Contains(hr.Title, "not in use") {
		t.Errorf("an unused router's missing resource is a warning: %+v", hr)
	}
}

func TestHTTPRouteVersionIsPickedAsCanarydDoes(t *testing.T) {
	linkerdRoutes := schema.GroupVersionResource{Group: "policy.linkerd.io", Version: "v1beta3", Resource: "httproutes"}
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits, linkerdRoutes}}
	r := Run(context.Background(), c.config(t))
	if hr := one(t, r, CatRouting, "HTTPRoute"); hr.Status != OK || !strings.Contains(hr.Title, "policy.linkerd.io/v1beta3") {
		t.Errorf("with only Linkerd's HTTPRoute served, canaryd writes that one: %+v", hr)
	}
}

func TestInjectionIsAWarning(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits}, objects: []runtime.Object{
		namespace("meshed", "enabled"), namespace("bare", ""), namespace("mixed", "disabled"),
		optedIn("meshed", "a", nil, nil),
		optedIn("bare", "b", nil, nil),
		optedIn("mixed", "c", nil, map[string]string{annotationInject: "enabled"}),
		optedIn("mixed", "d", nil, nil),
	}}
	r := Run(context.Background(), c.config(t))
	if x := one(t, r, CatInjection, "namespace meshed"); x.Status != OK {
		t.Errorf("meshed: %+v", x)
	}
	if x := one(t, r, CatInjection, "namespace bare"); x.Status != Warn || !strings.Contains(x.Title, "no linkerd.io/inject annotation: b") ||
		!strings.Contains(x.Hint, "kubectl annotate namespace bare linkerd.io/inject=enabled") {
		t.Errorf("bare: %+v", x)
	}
	if x := one(t, r, CatInjection, "namespace mixed"); x.Status != Warn || !strings.HasSuffix(x.Title, "=disabled: d will not be meshed") {
		t.Errorf("the pod template's annotation wins over the namespace's: %+v", x)
	}
	if r.Failed() {
		t.Error("missing injection alone must not fail the report")
	}
}

// canaryd's own identity need not read namespaces: the check then judges
// by the pod templates alone.
func TestInjectionWithoutReadingNamespaces(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits}, objects: []runtime.Object{
		namespace("shop", "enabled"), namespace("billing", "enabled"),
		optedIn("shop", "web", nil, map[string]string{annotationInject: "enabled"}),
		optedIn("billing", "ledger", nil, nil),
	}}
	cfg := c.config(t)
	cfg.Client.(*fake.Clientset).PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "shop", errors.New("no"))
	})
	r := Run(context.Background(), cfg)
	if x := one(t, r, CatInjection, "namespace shop"); x.Status != OK {
		t.Errorf("the template asks for injection: %+v", x)
	}
	if x := one(t, r, CatInjection, "namespace billing"); x.Status != Warn || !strings.Contains(x.Title, "cannot read namespace billing") {
		t.Errorf("billing: %+v", x)
	}
}

func TestInvalidAnnotationsFail(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits}, objects: []runtime.Object{
		namespace("shop", "enabled"),
		optedIn("shop", "web", map[string]string{rollout.KeySteps: "50,10"}, nil),
	}}
	r := Run(context.Background(), c.config(t))
	x := one(t, r, CatWorkloads, "shop/web")
	if x.Status != Fail || !strings.Contains(x.Detail, rollout.KeySteps) || !strings.Contains(x.Detail, "strictly increasing") {
		t.Errorf("invalid annotations: %+v", x)
	}
}

func TestServiceProfilesThatOverrideAnHTTPRouteSplit(t *testing.T) {
	c := &cluster{served: []schema.GroupVersionResource{trafficSplits, httpRoutes, serviceProfiles}, objects: []runtime.Object{
		namespace("shop", "enabled"),
		optedIn("shop", "web", map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute}, nil),
		optedIn("shop", "api", map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute, rollout.KeyService: "api-front"}, nil),
		optedIn("shop", "cart", nil, nil), // smi: a ServiceProfile is how linkerd-smi splits
		profile("shop", "web.shop.svc.cluster.local", map[string]any{"routes": []any{map[string]any{"name": "GET /"}}}),
		profile("shop", "api-front.shop.svc.example.org", map[string]any{}), // empty: no override
		profile("shop", "cart.shop.svc.cluster.local", map[string]any{"dstOverrides": []any{map[string]any{"authority": "x"}}}),
	}}
	r := Run(context.Background(), c.config(t))
	found := r.Find(CatProfiles, "ServiceProfile")
	if len(found) != 1 || found[0].Status != Fail || !strings.Contains(found[0].Title, "web.shop.svc.cluster.local (with routes) on the apex Service of shop/web") {
		t.Errorf("want exactly web's profile flagged: %+v", found)
	}
}

func TestPrintLooksLikeLinkerdCheck(t *testing.T) {
	r := Report{Results: []Result{
		{Category: CatAPI, Status: OK, Title: "can reach the API server"},
		{Category: CatRBAC, Status: Fail, Title: "cannot patch events in all namespaces", Detail: "missing: patch events (all namespaces)",
			Hint: strings.Repeat("grant the verb to canaryd's ServiceAccount ", 4)},
		{Category: CatInjection, Status: Warn, Title: "namespace shop has no linkerd.io/inject annotation: web will not be meshed"},
	}}
	var b strings.Builder
	if err := r.Print(&b); err != nil {
		t.Fatal(err)
	}
	want := `kubernetes-api
--------------
✔ can reach the API server

canaryd-rbac
------------
✘ cannot patch events in all namespaces
    missing: patch events (all namespaces)
    hint: grant the verb to canaryd's ServiceAccount grant the verb to canaryd's ServiceAccount
          grant the verb to canaryd's ServiceAccount grant the verb to canaryd's ServiceAccount

linkerd-injection
-----------------
‼ namespace shop has no linkerd.io/inject annotation: web will not be meshed

Status check results are ✘: 1 check failed, 1 warning
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
