package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

// httpRouteVersions are the HTTPRoute APIs Linkerd reads, newest first:
// Gateway API v1 (Linkerd 2.18+), v1beta1 (2.15–2.17) and Linkerd's own
// policy.linkerd.io/v1beta3. Their spec is the same for what canaryd writes.
var httpRouteVersions = []string{"gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1", "policy.linkerd.io/v1beta3"}

// httpRouteGVR is the HTTPRoute API to write: the configured one, or else
// the first of httpRouteVersions the API server serves (v1 when it serves
// none: a Deployment asking for the router then gets "install its CRD").
func httpRouteGVR(version string, d discovery.DiscoveryInterface) (schema.GroupVersionResource, error) {
	gvr := func(v string) schema.GroupVersionResource {
		gv, _ := schema.ParseGroupVersion(v)
		return gv.WithResource("httproutes")
	}
	if version != "" {
		for _, v := range httpRouteVersions {
			if v == version {
				return gvr(v), nil
			}
		}
		return schema.GroupVersionResource{}, fmt.Errorf("kube: HTTPRoute version %q: want one of %s, or empty to use the first served", version, strings.Join(httpRouteVersions, ", "))
	}
	for _, v := range httpRouteVersions {
		if serves(d, gvr(v)) {
			return gvr(v), nil
		}
	}
	return gvr(httpRouteVersions[0]), nil
}

// serves: the API server serves the resource (an error counts as no).
func serves(d discovery.DiscoveryInterface, gvr schema.GroupVersionResource) bool {
	list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// httpRouteRouter writes the HTTPRoute "foo": parent the apex Service (kind
// Service, group core, its first port), and either one rule splitting by
// weight between foo-stable and foo-canary, or in A/B mode a rule sending the
// matched requests to foo-canary and a default rule sending the rest to
// foo-stable. Every rule lists both backends, so weights always sum to 100
// per rule. Weights are whole percent: canary milli / 10.
type httpRouteRouter struct {
	dyn dynamic.Interface
	res schema.GroupVersionResource
	// requireAccepted: a route counts as carrying its weights only once
	// status.parents says Accepted=True (a policy controller is present).
	requireAccepted bool
	defaults        rollout.Spec
	// spec is an opted-in Deployment's configuration from the cache; false
	// when the Deployment is not (or no longer) opted in.
	spec func(ns, name string) (rollout.Spec, bool)
}

func (r *httpRouteRouter) gvr() schema.GroupVersionResource { return r.res }

// gatedByAcceptance: weights count as in place only once the route's status
// says Accepted, not when the write succeeds.
func (r *httpRouteRouter) gatedByAcceptance() bool { return r.requireAccepted }

// routeRule is one rule of canaryd's route, reduced to what canaryd sets.
type routeRule struct {
	// cond is the rule's match in a normal form ("" for the default rule
	// that takes every request), so that what the API server defaulted
	// compares equal to what canaryd wrote.
	cond           string
	stable, canary int64 // percent
	port           int64 // backends' port
}

// routeShape is canaryd's route for foo, reduced to what canaryd sets.
type routeShape struct {
	parent string
	port   int64
	rules  []routeRule
}

// wantShape is the route for canary weight milli; match != nil in A/B mode.
func wantShape(apex string, port int64, milli int, match *rollout.Match) routeShape {
	s := routeShape{parent: apex, port: port}
	if match == nil {
		c := int64(milli / 10)
		s.rules = []routeRule{{stable: 100 - c, canary: c, port: port}}
		return s
	}
	s.rules = []routeRule{
		{cond: condOf(matchObject(match)), stable: 0, canary: 100, port: port},
		{stable: 100, canary: 0, port: port},
	}
	return s
}

// matchObject renders a Match as a Gateway API HTTPRouteMatch. A cookie is a
// regular expression on the Cookie header (the Gateway API has no cookie
// match); header names are case-insensitive, so Cookie matches cookie.
func matchObject(m *rollout.Match) map[string]any {
	switch m.Kind {
	case rollout.MatchHeader:
		return map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": m.Name, "value": m.Value}}}
	case rollout.MatchCookie:
		return map[string]any{"headers": []any{map[string]any{"type": "RegularExpression", "name": "Cookie", "value": m.CookieRegex()}}}
	default:
		return map[string]any{"path": map[string]any{"type": "PathPrefix", "value": m.Value}}
	}
}

// condOf is the normal form of one HTTPRouteMatch: the defaults the API
// server fills in (path PathPrefix "/", header type Exact) are dropped and
// header names lowercased. "" is the match-everything rule.
func condOf(m map[string]any) string {
	n := map[string]any{}
	for k, v := range m {
		n[k] = v
	}
	if p, ok := n["path"].(map[string]any); ok {
		typ, _ := p["type"].(string)
		val, _ := p["value"].(string)
		if (typ == "" || typ == "PathPrefix") && (val == "" || val == "/") {
			delete(n, "path")
		}
	}
	if hs, ok := n["headers"].([]any); ok {
		var norm []any
		for _, h := range hs {
			hm, _ := h.(map[string]any)
			name, _ := hm["name"].(string)
			typ, _ := hm["type"].(string)
			if typ == "" {
				typ = "Exact"
			}
			norm = append(norm, map[string]any{"name": strings.ToLower(name), "type": typ, "value": hm["value"]})
		}
		n["headers"] = norm
	}
	if len(n) == 0 {
		return ""
	}
	b, _ := json.Marshal(n) // map keys marshal sorted: a stable form
	return string(b)
}

// spec renders the shape as an HTTPRoute spec for foo.
func (s routeShape) spec(foo string) map[string]any {
	backend := func(name string, port, weight int64) any {
		return map[string]any{"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}
	}
	rules := make([]any, 0, len(s.rules))
	for _, r := range s.rules {
		rule := map[string]any{"backendRefs": []any{
			backend(stableName(foo), r.port, r.stable),
			backend(canaryName(foo), r.port, r.canary),
		}}
		if r.cond != "" {
			var m map[string]any
			_ = json.Unmarshal([]byte(r.cond), &m) // cond came from json.Marshal
			rule["matches"] = []any{m}
		}
		rules = append(rules, rule)
	}
	return map[string]any{
		// group core, explicitly: the CRD's default group is the Gateway API's.
		"parentRefs": []any{map[string]any{"group": "core", "kind": "Service", "name": s.parent, "port": s.port}},
		"rules":      rules,
	}
}

// parseShape reads canaryd's shape back from a route; false when the route
// is not of that shape (edited by hand, say), which makes canaryd rewrite it.
// Fields canaryd does not set are ignored: the API server may default some.
func parseShape(u *unstructured.Unstructured, foo string) (routeShape, bool) {
	var s routeShape
	parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
	if len(parents) != 1 {
		return s, false
	}
	p, _ := parents[0].(map[string]any)
	if !isServiceRef(p, false) || p["sectionName"] != nil || (p["namespace"] != nil && p["namespace"] != u.GetNamespace()) {
		return s, false
	}
	s.parent, _ = p["name"].(string)
	s.port, _ = asInt(p["port"])
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	for _, raw := range rules {
		rm, _ := raw.(map[string]any)
		var r routeRule
		switch ms, _ := rm["matches"].([]any); len(ms) {
		case 0:
		case 1:
			m, _ := ms[0].(map[string]any)
			r.cond = condOf(m)
		default:
			return s, false
		}
		refs, _ := rm["backendRefs"].([]any)
		if len(refs) != 2 {
			return s, false
		}
		seen := map[string]bool{}
		for _, ref := range refs {
			b, _ := ref.(map[string]any)
			name, _ := b["name"].(string)
			w, ok := int64(1), true // the Gateway API's default weight
			if b["weight"] != nil {
				w, ok = asInt(b["weight"])
			}
			port, _ := asInt(b["port"])
			if !ok || !isServiceRef(b, true) || seen[name] || (r.port != 0 && port != r.port) {
				return s, false
			}
			seen[name], r.port = true, port
			switch name {
			case stableName(foo):
				r.stable = w
			case canaryName(foo):
				r.canary = w
			default:
				return s, false
			}
		}
		if r.stable < 0 || r.canary < 0 || r.stable+r.canary != 100 {
			return s, false
		}
		s.rules = append(s.rules, r)
	}
	return s, len(s.rules) > 0
}

// isServiceRef: the reference names a core Service. A backendRef's kind
// defaults to Service, a parentRef's to Gateway.
func isServiceRef(m map[string]any, backend bool) bool {
	kind, _ := m["kind"].(string)
	group, _ := m["group"].(string)
	if kind == "" && backend {
		kind = "Service"
	}
	return kind == "Service" && (group == "" || group == "core")
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), n == float64(int64(n))
	}
	return 0, false
}

// weightOf is the canary weight (milli) a shape carries. An A/B shape reads
// as rollout.ABWeight when its match is the one foo's configuration asks for
// (or when foo is no longer opted in, so that offboarding first moves the
// weight to 0), and as nothing otherwise, so that a changed match is written.
func (r *httpRouteRouter) weightOf(s routeShape, ns, foo string) (int, bool) {
	switch {
	case len(s.rules) == 1 && s.rules[0].cond == "":
		return int(s.rules[0].canary * 10), true
	case len(s.rules) == 2 && s.rules[0].cond != "" && s.rules[1].cond == "" &&
		s.rules[0].canary == 100 && s.rules[1].stable == 100:
		spec, ok := r.spec(ns, foo)
		if !ok {
			return rollout.ABWeight, true
		}
		m := spec.RouteMatch(rollout.ABWeight)
		return rollout.ABWeight, m != nil && condOf(matchObject(m)) == s.rules[0].cond
	}
	return 0, false
}

// observe returns the canary weight the route carries, or nil when there is
// no route of canaryd's shape or, when acceptance is required, the route's
// current generation is not accepted yet.
func (r *httpRouteRouter) observe(l cache.GenericLister, ns, foo string) (*int, error) {
	u, err := r.get(l, ns, foo)
	if u == nil || err != nil {
		return nil, err
	}
	s, ok := parseShape(u, foo)
	if !ok {
		return nil, nil
	}
	milli, ok := r.weightOf(s, ns, foo)
	if !ok {
		return nil, nil
	}
	if r.requireAccepted {
		if state, _ := acceptance(u, s); state != accepted {
			return nil, nil
		}
	}
	return &milli, nil
}

// get reads canaryd's route for foo from the cache, a copy the caller may
// change; nil when there is none.
func (r *httpRouteRouter) get(l cache.GenericLister, ns, foo string) (*unstructured.Unstructured, error) {
	obj, err := l.ByNamespace(ns).Get(foo)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading HTTPRoute %s: %w", foo, err)
	}
	u, ok, err := asUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("reading HTTPRoute %s: %w", foo, err)
	}
	if !ok || !isOurs(u, foo) {
		return nil, nil
	}
	return u, nil
}

// apply makes the route carry milli (and, in A/B mode, the match). It writes
// only when canaryd's shape differs; updates carry the cached
// resourceVersion and replace the spec whole.
func (r *httpRouteRouter) apply(ctx context.Context, l cache.GenericLister, foo *appsv1.Deployment, apex parent, milli int) (bool, error) {
	spec, _ := rollout.ParseSpec(foo.Annotations, r.defaults)
	match := spec.RouteMatch(milli)
	client := r.dyn.Resource(r.res).Namespace(foo.Namespace)
	cur, err := r.get(l, foo.Namespace, foo.Name)
	if err != nil {
		return false, err
	}
	var port int64
	if len(apex.Ports) > 0 {
		port = int64(apex.Ports[0].Port)
	}
	if cur == nil {
		if port == 0 {
			return false, fmt.Errorf("creating HTTPRoute %s: the apex Service %s has no port to attach it to", foo.Name, apex.Name)
		}
		u := r.object(foo, wantShape(apex.Name, port, milli, match))
		if _, err := client.Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return false, r.explainExisting(ctx, foo)
			}
			return false, fmt.Errorf("creating HTTPRoute %s: %w", foo.Name, err)
		}
		return true, nil
	}
	have, ok := parseShape(cur, foo.Name)
	if port == 0 { // offboarding knows no ports: the weight changes, not the parent
		port = have.port
	}
	want := wantShape(apex.Name, port, milli, match)
	if ok && reflect.DeepEqual(have, want) {
		return false, nil
	}
	cur.Object["spec"] = want.spec(foo.Name) // get's copy: the cache is untouched
	if _, err := client.Update(ctx, cur, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return false, fmt.Errorf("updating HTTPRoute %s to canary weight %dm: %w", foo.Name, milli, err)
	}
	return true, nil
}

// explainExisting: a create met a route canaryd's cache does not hold (it
// only watches its own). A foreign one is a conflict retrying cannot fix.
func (r *httpRouteRouter) explainExisting(ctx context.Context, foo *appsv1.Deployment) error {
	live, err := r.dyn.Resource(r.res).Namespace(foo.Namespace).Get(ctx, foo.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading HTTPRoute %s: %w", foo.Name, err)
	}
	if !isOurs(live, foo.Name) {
		return conflictError{fmt.Errorf("HTTPRoute %s exists and is not canaryd's (no %s=%s label): delete or rename it so canaryd can route %s",
			foo.Name, rollout.LabelManaged, foo.Name, foo.Name)}
	}
	return errStale // ours, and the cache has not seen it yet
}

// object is the whole route for a create.
func (r *httpRouteRouter) object(foo *appsv1.Deployment, s routeShape) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": r.res.GroupVersion().String(),
		"kind":       "HTTPRoute",
		"spec":       s.spec(foo.Name),
	}}
	u.SetName(foo.Name)
	u.SetNamespace(foo.Namespace)
	u.SetLabels(map[string]string{rollout.LabelManaged: foo.Name})
	u.SetOwnerReferences([]metav1.OwnerReference{ownerRef(foo)})
	return u
}

func (r *httpRouteRouter) delete(ctx context.Context, l cache.GenericLister, ns, foo string) error {
	if _, err := l.ByNamespace(ns).Get(foo); apierrors.IsNotFound(err) {
		return nil
	}
	err := r.dyn.Resource(r.res).Namespace(ns).Delete(ctx, foo, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting HTTPRoute %s: %w", foo, err)
	}
	return nil
}
