package checkup

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	// Object, when set, is the one object the permission is for (the
	// Lease): it is reviewed by name, as RBAC may grant get and update by
	// resourceNames. A create is never authorized by name, so it is not.
	Object string
	// IfServed, when set, is the resource whose being served makes canaryd
	// watch it: an informer on it never syncs without list and watch.
	IfServed *schema.GroupVersionResource
	// Optional permissions are needed only by some clusters; missing, they
	// are a warning.
	Optional bool
}

// Name is resource.group, as RBAC and kubectl spell it.
func (p Permission) Name() string {
	res, sub, _ := strings.Cut(p.Resource, "/")
	if p.Group != "" {
		res += "." + p.Group
	}
	if sub != "" {
		res += "/" + sub
	}
	return res
}

// Permissions is what canaryd needs with cfg, read off package kube:
// every informer needs list and watch, every write its verb.
func Permissions(cfg Config) []Permission {
	cfg = cfg.withDefaults()
	perms := []Permission{
		{Group: "apps", Resource: "deployments", Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
			Why: "informers on opted-in and canary Deployments; live reads before writes (sync.go, apply.go ensureFresh); " +
				"status and spec.paused by merge patch (patchFoo); foo-canary created, scaled and deleted (applyCanary, deleteOwned)"},
		{Group: "apps", Resource: "deployments/finalizers", Verbs: []string{"update"}, Optional: true,
			Why: "foo-canary and canaryd's Services carry a blocking ownerReference to foo, which clusters enforcing " +
				"owner-reference permissions (OwnerReferencesPermissionEnforcement, e.g. OpenShift) allow only with this"},
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
		verbs := []string{"list", "watch", "create", "update", "delete"}
		if gvr.Resource == "httproutes" {
			verbs = append([]string{"get"}, verbs...) // httproute.go reads a route its cache lacks to tell a foreign one from its own
		}
		perms = append(perms, Permission{Group: gvr.Group, Resource: gvr.Resource, Verbs: verbs,
			IfServed: &gvr, Why: "the split is watched, created, re-weighted and removed by its router (router.go, smi.go, httproute.go)"})
	}
	perms = append(perms, Permission{Group: serviceProfiles.Group, Resource: serviceProfiles.Resource, Verbs: []string{"list", "watch"},
		IfServed: &serviceProfiles, Why: "ServiceProfiles that would override an HTTPRoute split hold the rollout (httproute_block.go)"})
	if cfg.Lease != nil {
		perms = append(perms, Permission{Group: "coordination.k8s.io", Resource: "leases", Verbs: []string{"get", "create", "update"},
			Namespace: cfg.Lease.Namespace, Object: cfg.Lease.Name,
			Why: "leader election takes and renews Lease " + cfg.Lease.Name + " (--leader-elect)"})
	}
	return perms
}

// rbac asks the API server, one access review per verb and namespace,
// whether the identity in use may do what canaryd does.
func (r *run) rbac(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	for _, p := range Permissions(r.cfg) {
		if p.IfServed != nil && !r.served[*p.IfServed] && r.discovered[*p.IfServed] == nil {
			continue // not served: canaryd neither watches nor writes it (routing reports it)
		}
		namespaces, where := r.cfg.Namespaces, r.cfg.scope()
		if len(namespaces) == 0 {
			namespaces = []string{""} // an empty namespace asks about all of them
		}
		if p.Namespace != "" {
			namespaces, where = []string{p.Namespace}, "in namespace "+p.Namespace
		}
		missing := map[string][]string{} // namespace → verbs denied there
		var order, denied []string
		for _, verb := range p.Verbs {
			for _, ns := range namespaces {
				ok, err := r.allowed(ctx, ns, verb, p)
				if err != nil {
					r.add(CatRBAC, Fail, fmt.Sprintf("cannot review access to %s", p.Name()), err.Error(),
						"the identity in use may not create selfsubjectaccessreviews (granted to every authenticated user by default)")
					return
				}
				if ok {
					continue
				}
				if _, seen := missing[ns]; !seen {
					order = append(order, ns)
				}
				missing[ns] = append(missing[ns], verb)
				if !contains(denied, verb) {
					denied = append(denied, verb)
				}
			}
		}
		if len(missing) == 0 {
			r.add(CatRBAC, OK, fmt.Sprintf("can %s %s %s", strings.Join(p.Verbs, ", "), p.Name(), where), "", "")
			continue
		}
		var detail []string
		if len(order) > 1 {
			for _, ns := range order {
				detail = append(detail, fmt.Sprintf("missing %s: %s", nsWord(ns), strings.Join(missing[ns], ", ")))
			}
		}
		status := Fail
		if p.Optional {
			status = Warn
		}
		r.add(CatRBAC, status, fmt.Sprintf("cannot %s %s %s", strings.Join(denied, ", "), p.Name(), where),
			strings.Join(detail, "\n"),
			fmt.Sprintf("grant verbs [%s] on resource %q of apiGroup %q to canaryd's ServiceAccount; canaryd uses them for: %s",
				strings.Join(p.Verbs, ", "), p.Resource, p.Group, p.Why))
	}
}

func (r *run) allowed(ctx context.Context, ns, verb string, p Permission) (bool, error) {
	res, sub, _ := strings.Cut(p.Resource, "/")
	name := p.Object
	if verb == "create" {
		name = ""
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: p.Group, Resource: res, Subresource: sub, Name: name},
	}}
	answer, err := r.cfg.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review of %s %s: %w", verb, p.Name(), err)
	}
	return answer.Status.Allowed, nil
}

func nsWord(ns string) string {
	if ns == "" {
		return "in all namespaces"
	}
	return "in namespace " + ns
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
