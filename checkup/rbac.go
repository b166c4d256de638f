package checkup

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Permission is what canaryd does to one resource, and why.
type Permission struct {
	Group    string
	Resource string
	Verbs    []string
	// Why names the code in package kube that needs it: the hint a person
	// reads when it is missing.
	Why string
	// Namespace, when set, is the only namespace the permission is needed
	// in (the Lease); otherwise it is needed in every watched namespace.
	Namespace string
}

// Name is resource.group, as RBAC and kubectl spell it.
func (p Permission) Name() string {
	if p.Group == "" {
		return p.Resource
	}
	return p.Resource + "." + p.Group
}

// Permissions is what canaryd needs with cfg, read off package kube:
// every informer needs list and watch, every write its verb.
func Permissions(cfg Config) []Permission {
	cfg = cfg.withDefaults()
	perms := []Permission{
		{Group: "apps", Resource: "deployments", Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
			Why: "informers on opted-in and canary Deployments; live reads before writes (sync.go, apply.go ensureFresh); " +
				"status and spec.paused by merge patch (patchFoo); foo-canary created, scaled and deleted (applyCanary, deleteOwned)"},
		{Group: "apps", Resource: "replicasets", Verbs: []string{"list", "watch"},
			Why: "the ReplicaSet informer tells stable and canary revisions apart (informers.go)"},
		{Group: "", Resource: "services", Verbs: []string{"list", "watch", "create", "update", "delete"},
			Why: "foo-stable, foo-canary and a missing apex are created, re-pointed and removed (applyServices, deleteOwned)"},
		{Group: "discovery.k8s.io", Resource: "endpointslices", Verbs: []string{"list", "watch"},
			Why: "ready endpoints gate every weight change (observe.go readyEndpoints)"},
		{Group: "", Resource: "events", Verbs: []string{"create", "patch"},
			Why: "every decision is an Event on the Deployment; repeats are patched onto the first (controller.go recorder)"},
	}
	for _, gvr := range cfg.routingResources() {
		perms = append(perms, Permission{Group: gvr.Group, Resource: gvr.Resource, Verbs: []string{"list", "watch", "create", "update", "delete"},
			Why: "the split is watched, created, re-weighted and removed by its router (router.go)"})
	}
	if cfg.Lease != nil {
		perms = append(perms, Permission{Group: "coordination.k8s.io", Resource: "leases", Verbs: []string{"get", "create", "update"},
			Namespace: cfg.Lease.Namespace,
			Why:       "leader election takes and renews Lease " + cfg.Lease.Name + " (--leader-elect)"})
	}
	return perms
}

// rbac asks the API server, one access review per verb and namespace,
// whether the identity in use may do what canaryd does.
func (r *run) rbac(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	routing := map[string]bool{}
	for _, gvr := range r.cfg.routingResources() {
		routing[gvr.GroupResource().String()] = !r.served[gvr] && r.discovered[gvr] == nil
	}
	for _, p := range Permissions(r.cfg) {
		if routing[p.Name()] {
			continue // not served: canaryd neither watches nor writes it (routing reports it)
		}
		namespaces, where := r.cfg.Namespaces, r.cfg.scope()
		if len(namespaces) == 0 {
			namespaces = []string{""} // an empty namespace asks about all of them
		}
		if p.Namespace != "" {
			namespaces, where = []string{p.Namespace}, "in namespace "+p.Namespace
		}
		var missing []string
		var denied []string // verbs missing somewhere, each once
		for _, verb := range p.Verbs {
			for _, ns := range namespaces {
				ok, err := r.allowed(ctx, ns, verb, p)
				if err != nil {
					r.add(CatRBAC, Fail, fmt.Sprintf("cannot review access to %s", p.Name()), err.Error(),
						"the identity in use may not create selfsubjectaccessreviews (granted to every authenticated user by default)")
					return
				}
				if !ok {
					missing = append(missing, fmt.Sprintf("%s %s %s", verb, p.Name(), nsWord(ns)))
					if !contains(denied, verb) {
						denied = append(denied, verb)
					}
				}
			}
		}
		if len(missing) == 0 {
			r.add(CatRBAC, OK, fmt.Sprintf("can %s %s %s", strings.Join(p.Verbs, ", "), p.Name(), where), "", "")
			continue
		}
		r.add(CatRBAC, Fail, fmt.Sprintf("cannot %s %s %s", strings.Join(denied, ", "), p.Name(), where),
			"missing: "+list(missing, 4),
			fmt.Sprintf("canaryd needs it for %s; grant verbs [%s] on resource %q of apiGroup %q to canaryd's ServiceAccount",
				p.Why, strings.Join(p.Verbs, ", "), p.Resource, p.Group))
	}
}

func (r *run) allowed(ctx context.Context, ns, verb string, p Permission) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: p.Group, Resource: p.Resource},
	}}
	res, err := r.cfg.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review of %s %s: %w", verb, p.Name(), err)
	}
	return res.Status.Allowed, nil
}

func nsWord(ns string) string {
	if ns == "" {
		return "(all namespaces)"
	}
	return "(namespace " + ns + ")"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
