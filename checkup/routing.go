package checkup

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/canaryd/canaryd/rollout"
)

var serviceProfiles = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}

// HTTPRouteVersions are the HTTPRoute APIs canaryd can write, in the order
// it picks the first served when --httproute-version is empty (kube/httproute.go).
var HTTPRouteVersions = []schema.GroupVersion{
	{Group: "gateway.networking.k8s.io", Version: "v1"},
	{Group: "gateway.networking.k8s.io", Version: "v1beta1"},
	{Group: "policy.linkerd.io", Version: "v1beta3"},
}

// httpRouteVersion is the configured HTTPRoute API or, like canaryd, the
// first of HTTPRouteVersions the API server serves (v1 when none is).
func (r *run) httpRouteVersion() schema.GroupVersion {
	if !r.cfg.HTTPRoute.Empty() {
		return r.cfg.HTTPRoute
	}
	for _, gv := range HTTPRouteVersions {
		if served(r.cfg.Client.Discovery(), gv.WithResource("httproutes")) {
			return gv
		}
	}
	return HTTPRouteVersions[0]
}

func served(d discovery.DiscoveryInterface, gvr schema.GroupVersionResource) bool {
	list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, res := range list.APIResources {
		if res.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// routers maps canaryd.io/router values to the resource each writes.
func (c Config) routers() map[string]schema.GroupVersionResource {
	if c.HTTPRoute.Empty() {
		c.HTTPRoute = HTTPRouteVersions[0]
	}
	return map[string]schema.GroupVersionResource{
		rollout.RouterSMI:       {Group: "split.smi-spec.io", Version: c.SMIVersion, Resource: "trafficsplits"},
		rollout.RouterHTTPRoute: c.HTTPRoute.WithResource("httproutes"),
	}
}

func (c Config) routingResources() []schema.GroupVersionResource {
	return []schema.GroupVersionResource{c.routers()[rollout.RouterSMI], c.routers()[rollout.RouterHTTPRoute]}
}

var kinds = map[string]string{rollout.RouterSMI: "TrafficSplit", rollout.RouterHTTPRoute: "HTTPRoute"}

// discover asks which routing resources (and ServiceProfiles) the API
// server serves, once. An error other than "not found" is kept: the
// resource's state is unknown.
func (r *run) discover() map[schema.GroupVersionResource]error {
	out := map[schema.GroupVersionResource]error{}
	r.served = map[schema.GroupVersionResource]bool{}
	for _, gvr := range append(r.cfg.routingResources(), serviceProfiles) {
		list, err := r.cfg.Client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
		if err != nil {
			if !apierrors.IsNotFound(err) {
				out[gvr] = err
			}
			continue
		}
		for _, res := range list.APIResources {
			if res.Name == gvr.Resource {
				r.served[gvr] = true
			}
		}
	}
	return out
}

// routing checks that the resource of every router in use is served at the
// version canaryd writes. A router nobody uses may be missing (‼): canaryd
// watches only what is served.
func (r *run) routing() {
	errs := r.discovered
	users := r.routerUsers()
	for _, name := range []string{rollout.RouterSMI, rollout.RouterHTTPRoute} {
		gvr := r.cfg.routers()[name]
		what := fmt.Sprintf("%s %s/%s", kinds[name], gvr.Group, gvr.Version)
		used := users[name]
		switch {
		case r.served[gvr]:
			r.add(CatRouting, OK, fmt.Sprintf("%s is served%s", what, usedBy(used)), "", "")
		case errs[gvr] != nil:
			r.add(CatRouting, Fail, fmt.Sprintf("cannot tell whether %s is served", what), errs[gvr].Error(),
				"the API server's discovery failed for this group; retry, or check aggregated APIs")
		case len(used) > 0:
			r.add(CatRouting, Fail, fmt.Sprintf("%s is not served, but router %q is in use%s", what, name, usedBy(used)), "",
				installHint(name, gvr))
		default:
			r.add(CatRouting, Warn, fmt.Sprintf("%s is not served (router %q is not in use)", what, name), "",
				installHint(name, gvr)+" before setting "+rollout.KeyRouter+": "+name)
		}
	}
}

func installHint(router string, gvr schema.GroupVersionResource) string {
	if router == rollout.RouterSMI {
		return fmt.Sprintf("install linkerd-smi (its TrafficSplit CRD serves %s), or run canaryd with the --smi-version the CRD serves", gvr.Version)
	}
	return fmt.Sprintf("install the Gateway API CRDs serving %s (Linkerd 2.18+: gateway.networking.k8s.io/v1)", gvr.GroupVersion())
}

// routerUsers lists, per router, "default" when it is the cluster default
// and the opted-in Deployments that ask for it.
func (r *run) routerUsers() map[string][]string {
	users := map[string][]string{r.cfg.Defaults.Router: {"the cluster default"}}
	for _, d := range r.deployments {
		if d.specErr == nil && d.spec.Router != r.cfg.Defaults.Router {
			users[d.spec.Router] = append(users[d.spec.Router], d.key())
		}
	}
	return users
}

func usedBy(users []string) string {
	if len(users) == 0 {
		return ""
	}
	return " (used by " + list(users, 3) + ")"
}

// profiles finds ServiceProfiles on the apex Service of Deployments routed
// by HTTPRoute: Linkerd lets a ServiceProfile win over an HTTPRoute on the
// same Service, which silently disables the canary split.
func (r *run) profiles(ctx context.Context) {
	var routed []deployment
	for _, d := range r.deployments {
		if d.specErr == nil && d.spec.Router == rollout.RouterHTTPRoute {
			routed = append(routed, d)
		}
	}
	if len(routed) == 0 {
		r.add(CatProfiles, OK, "no Deployment is routed by HTTPRoute: ServiceProfiles cannot override a split", "", "")
		return
	}
	if !r.served[serviceProfiles] {
		r.add(CatProfiles, OK, "the ServiceProfile CRD is not installed: nothing can override an HTTPRoute split", "", "")
		return
	}
	if r.cfg.Dynamic == nil {
		r.add(CatProfiles, Warn, "ServiceProfiles not checked: no dynamic client", "", "")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var conflicts []string
	for _, d := range routed {
		list, err := r.cfg.Dynamic.Resource(serviceProfiles).Namespace(d.namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			r.add(CatProfiles, Warn, "cannot list ServiceProfiles in namespace "+d.namespace, err.Error(),
				"allow list on serviceprofiles.linkerd.io to check for ServiceProfiles overriding HTTPRoute splits")
			continue
		}
		// A ServiceProfile is named after the Service's FQDN; the cluster
		// domain varies, so match on the part that does not. Only one with
		// routes or dstOverrides takes over (an empty one, as linkerd-smi
		// leaves behind, does not): the rule canaryd's controller applies.
		prefix := d.apex() + "." + d.namespace + ".svc."
		for _, sp := range list.Items {
			if !strings.HasPrefix(sp.GetName(), prefix) {
				continue
			}
			var has []string
			for _, f := range []string{"routes", "dstOverrides"} {
				if v, _, _ := unstructured.NestedSlice(sp.Object, "spec", f); len(v) > 0 {
					has = append(has, f)
				}
			}
			if len(has) > 0 {
				conflicts = append(conflicts, fmt.Sprintf("ServiceProfile %s/%s (with %s) on the apex Service of %s",
					d.namespace, sp.GetName(), strings.Join(has, " and "), d.key()))
			}
		}
	}
	sort.Strings(conflicts)
	if len(conflicts) == 0 {
		r.add(CatProfiles, OK, fmt.Sprintf("no ServiceProfile overrides the HTTPRoute of %s", list(keys(routed), 3)), "", "")
		return
	}
	for _, c := range conflicts {
		r.add(CatProfiles, Fail, c+" overrides its HTTPRoute split", "",
			"Linkerd routes by the ServiceProfile and ignores the HTTPRoute (canaryd holds the rollout): delete the "+
				"ServiceProfile or empty its routes and dstOverrides (retries and timeouts can move to retry.linkerd.io / "+
				"timeout.linkerd.io annotations), or use router smi")
	}
}

func keys(ds []deployment) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.key()
	}
	return out
}
