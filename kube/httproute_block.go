package kube

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

// What can keep an HTTPRoute from carrying canaryd's weights, found and
// reported as rollout.Observed.RouteBlocked: a ServiceProfile on the apex
// that overrides it, or a route the policy controller did not accept.

// newHTTPRouteRouter builds the httproute router from the controller's
// configuration; spec reads a Deployment's configuration from the cache.
func newHTTPRouteRouter(cfg Config, spec func(ns, name string) (rollout.Spec, bool)) (*httpRouteRouter, error) {
	res, err := httpRouteGVR(cfg.HTTPRouteVersion, cfg.Client.Discovery())
	if err != nil {
		return nil, err
	}
	return &httpRouteRouter{dyn: cfg.Dynamic, res: res, requireAccepted: cfg.HTTPRouteRequireAccepted, defaults: cfg.Defaults, spec: spec}, nil
}

// cachedSpec is an opted-in Deployment's configuration as the cache has it;
// false when it is not in the cache (not opted in, or gone).
func (c *Controller) cachedSpec(ns, name string) (rollout.Spec, bool) {
	s := c.setFor(ns)
	if s == nil {
		return rollout.Spec{}, false
	}
	d, err := s.deployments.Deployments(ns).Get(name)
	if err != nil {
		return rollout.Spec{}, false
	}
	spec, _ := rollout.ParseSpec(d.Annotations, c.cfg.Defaults) // invalid: Decide changes nothing anyway
	return spec, true
}

type acceptanceState int

const (
	pending  acceptanceState = iota // no verdict on the current generation yet
	accepted                        // Accepted=True
	rejected                        // Accepted=False
)

// acceptance reads status.parents for the route's apex parent. A condition
// that carries observedGeneration counts only if it has seen the route's
// generation; Linkerd's policy controller leaves observedGeneration unset,
// and acceptance concerns the parent reference, which canaryd never changes,
// so such a condition is taken as it stands. Several controllers may report
// on one parent: any acceptance wins, then any rejection.
func acceptance(u *unstructured.Unstructured, s routeShape) (acceptanceState, string) {
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	state, why := pending, ""
	for _, raw := range parents {
		p, _ := raw.(map[string]any)
		ref, _ := p["parentRef"].(map[string]any)
		if ref == nil || !isServiceRef(ref, false) || ref["name"] != s.parent {
			continue
		}
		if port, ok := asInt(ref["port"]); ok && port != 0 && port != s.port {
			continue
		}
		conds, _ := p["conditions"].([]any)
		for _, rc := range conds {
			c, _ := rc.(map[string]any)
			if c["type"] != "Accepted" {
				continue
			}
			if g, ok := asInt(c["observedGeneration"]); ok && g < u.GetGeneration() {
				continue
			}
			switch c["status"] {
			case string(metav1.ConditionTrue):
				return accepted, ""
			case string(metav1.ConditionFalse):
				state = rejected
				why = fmt.Sprintf("%v", c["reason"])
				if m, _ := c["message"].(string); m != "" {
					why += ": " + m
				}
				if ctl, _ := p["controllerName"].(string); ctl != "" {
					why += " (" + ctl + ")"
				}
			}
		}
	}
	return state, why
}

// routeBlocked says why foo's HTTPRoute cannot carry weights now, or "".
func (c *Controller) routeBlocked(s *informerSet, foo *appsv1.Deployment, annotations map[string]string) string {
	spec, err := rollout.ParseSpec(annotations, c.cfg.Defaults)
	if err != nil || spec.Router != rollout.RouterHTTPRoute {
		return ""
	}
	apex := spec.Service
	if apex == "" {
		apex = foo.Name
	}
	if why := profileOverride(s, foo.Namespace, apex, foo.Name); why != "" {
		return why
	}
	r, ok := c.routers[rollout.RouterHTTPRoute].(*httpRouteRouter)
	if !ok || !r.requireAccepted {
		return ""
	}
	l, ok := s.routes[r.res]
	if !ok {
		return ""
	}
	u, _ := r.get(l, foo.Namespace, foo.Name)
	if u == nil {
		return ""
	}
	shape, _ := parseShape(u, foo.Name)
	if state, why := acceptance(u, shape); state == rejected {
		return fmt.Sprintf("HTTPRoute %s not accepted: %s", foo.Name, why)
	}
	return ""
}

var profileGVR = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}

// profileOverride: a ServiceProfile <apex>.<ns>.svc.<cluster domain> with
// routes or dstOverrides makes Linkerd's proxies use it instead of the apex's
// HTTPRoutes (an empty one, such as linkerd-smi leaves behind after its
// TrafficSplit is deleted, does not). Weights written then do nothing.
func profileOverride(s *informerSet, ns, apex, foo string) string {
	if s.profiles == nil {
		return ""
	}
	list, err := s.profiles.ByNamespace(ns).List(labels.Everything())
	if err != nil {
		return "" // a cache read cannot fail; at worst nothing holds
	}
	for _, obj := range list {
		m, ok := obj.(metav1.Object)
		if !ok || profileApex(m.GetName(), ns) != apex {
			continue
		}
		u, ok, err := asUnstructured(obj)
		if !ok || err != nil {
			continue // a cache entry always reads; at worst nothing holds
		}
		var has []string
		for _, f := range []string{"routes", "dstOverrides"} {
			if v, _, _ := unstructured.NestedSlice(u.Object, "spec", f); len(v) > 0 {
				has = append(has, f)
			}
		}
		if len(has) > 0 {
			return fmt.Sprintf("ServiceProfile %s (with %s) overrides HTTPRoute %s in Linkerd, so its weights would do nothing: delete the ServiceProfile or empty its %s",
				u.GetName(), strings.Join(has, " and "), foo, strings.Join(has, " and "))
		}
	}
	return ""
}

// profileApex is the Service a ServiceProfile is for: its name is the
// Service's FQDN, <svc>.<ns>.svc.<cluster domain>.
func profileApex(name, ns string) string {
	svc, _, ok := strings.Cut(name, "."+ns+".svc.")
	if !ok {
		return ""
	}
	return svc
}

// watchServiceProfiles adds a ServiceProfile cache to s when the API server
// serves them, and wakes every opted-in Deployment whose apex a profile
// names. Profiles are users' objects, so they are watched whole.
func (c *Controller) watchServiceProfiles(s *informerSet, ns string) {
	if !serves(c.cfg.Client.Discovery(), profileGVR) {
		return
	}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.cfg.Dynamic, c.cfg.Resync, ns, nil)
	inf := f.ForResource(profileGVR)
	_ = inf.Informer().SetTransform(stripForCache) // fails only once started
	// The dynamic lister would insist on unstructured entries; these are cachedObjects.
	s.profiles = cache.NewGenericLister(inf.Informer().GetIndexer(), profileGVR.GroupResource())
	onObject(inf.Informer(), func(obj metav1.Object) {
		apex := profileApex(obj.GetName(), obj.GetNamespace())
		deps, err := s.deployments.Deployments(obj.GetNamespace()).List(labels.Everything())
		if apex == "" || err != nil {
			return
		}
		for _, d := range deps {
			if svc := d.Annotations[rollout.KeyService]; svc == apex || (svc == "" && d.Name == apex) {
				c.enqueueFor(d.Namespace, d.Name)
			}
		}
	})
	s.factories = append(s.factories, f)
	s.synced = append(s.synced, inf.Informer().HasSynced)
}
