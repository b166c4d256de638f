package kube

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

// router writes one kind of traffic-splitting object for a Deployment
// (canaryd.io/router picks it). Weights are canary milli (0..1000); each
// router converts them to its API's unit.
type router interface {
	// gvr is the resource the router writes; it is watched (label
	// canaryd.io/managed-by) when the API server serves it.
	gvr() schema.GroupVersionResource
	// observe returns the canary weight the object carries, or nil when
	// there is none of canaryd's shape.
	observe(l cache.GenericLister, ns, foo string) (*int, error)
	// apply makes the object carry milli; it reports whether it wrote.
	apply(ctx context.Context, l cache.GenericLister, foo *appsv1.Deployment, apex parent, milli int) (bool, error)
	// delete removes the object if it exists.
	delete(ctx context.Context, l cache.GenericLister, ns, foo string) error
}

// parent is the apex Service a route attaches to.
type parent struct {
	Name  string
	Ports []corev1.ServicePort
}

// servedResources asks discovery which of the routers' resources the API
// server serves. An informer on a resource that is not served never syncs,
// so only served ones are watched; a Deployment asking for a router whose
// resource is missing gets a clear error instead.
func servedResources(d discovery.DiscoveryInterface, routers map[string]router) (map[schema.GroupVersionResource]bool, error) {
	served := map[schema.GroupVersionResource]bool{}
	for _, r := range routers {
		gvr := r.gvr()
		list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
		if err != nil {
			continue // not served (NotFound), or discovery is partial: treat as absent
		}
		for _, res := range list.APIResources {
			if res.Name == gvr.Resource {
				served[gvr] = true
			}
		}
	}
	if len(served) == 0 {
		return nil, fmt.Errorf("the API server serves none of the routing resources canaryd writes (%s): install the linkerd-smi or Gateway API CRDs", routerNames(routers))
	}
	return served, nil
}

func routerNames(routers map[string]router) string {
	s := ""
	for name, r := range routers {
		if s != "" {
			s += ", "
		}
		s += name + " → " + r.gvr().String()
	}
	return s
}

// routerFor returns the router named by the Deployment's configuration and
// its lister, or an error naming what is missing.
func (c *Controller) routerFor(s *informerSet, name string) (router, cache.GenericLister, error) {
	r, ok := c.routers[name]
	if !ok {
		return nil, nil, conflictError{fmt.Errorf("router %q is not available in this canaryd", name)}
	}
	l, ok := s.routes[r.gvr()]
	if !ok {
		return nil, nil, conflictError{fmt.Errorf("router %q needs %s, which the API server does not serve: install its CRD", name, r.gvr())}
	}
	return r, l, nil
}

// routerName is the router a Deployment's annotations ask for; with an
// invalid configuration, the cluster default (Decide then changes nothing).
func (c *Controller) routerName(annotations map[string]string) string {
	spec, err := rollout.ParseSpec(annotations, c.cfg.Defaults)
	if err != nil {
		return c.cfg.Defaults.Router
	}
	return spec.Router
}

// deleteRoutes removes foo's objects of every served router but keep ("":
// all of them). Switching routers creates the new object first, then calls
// this, so the apex is never left without a route.
func (c *Controller) deleteRoutes(ctx context.Context, s *informerSet, ns, foo, keep string) error {
	for name, r := range c.routers {
		l, ok := s.routes[r.gvr()]
		if name == keep || !ok {
			continue
		}
		if err := r.delete(ctx, l, ns, foo); err != nil {
			return err
		}
	}
	return nil
}

// hasRoute: some router's object for foo exists.
func (c *Controller) hasRoute(s *informerSet, ns, foo string) bool {
	for _, r := range c.routers {
		if l, ok := s.routes[r.gvr()]; ok {
			if _, err := l.ByNamespace(ns).Get(foo); err == nil {
				return true
			}
		}
	}
	return false
}
