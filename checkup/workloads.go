package checkup

import (
	"context"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
)

// Linkerd's injection annotation, on a namespace or a pod template (the
// template's wins), and the values that mesh a pod.
const (
	annotationInject = "linkerd.io/inject"
	injectEnabled    = "enabled"
	injectIngress    = "ingress"
)

// deployment is an opted-in Deployment as the checks need it.
type deployment struct {
	namespace, name string
	spec            rollout.Spec
	specErr         error
	inject          string // the pod template's linkerd.io/inject
}

func (d deployment) key() string { return d.namespace + "/" + d.name }

func (d deployment) apex() string {
	if d.spec.Service != "" {
		return d.spec.Service
	}
	return d.name
}

// inventory lists the opted-in Deployments in the watched namespaces.
func (r *run) inventory(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	namespaces := r.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	r.deployments = []deployment{}
	for _, ns := range namespaces {
		list, err := r.cfg.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: rollout.LabelEnabled + "=true"})
		if err != nil {
			r.deployments = nil
			return fmt.Errorf("listing opted-in Deployments %s: %w", nsWord(ns), err)
		}
		for _, d := range list.Items {
			spec, err := rollout.ParseSpec(d.Annotations, r.cfg.Defaults)
			r.deployments = append(r.deployments, deployment{namespace: d.Namespace, name: d.Name, spec: spec, specErr: err,
				inject: d.Spec.Template.Annotations[annotationInject]})
		}
	}
	sort.Slice(r.deployments, func(i, j int) bool { return r.deployments[i].key() < r.deployments[j].key() })
	return nil
}

// workloads reports the opted-in Deployments and any whose annotations
// canaryd would refuse (it then changes nothing for them).
func (r *run) workloads(ctx context.Context) {
	if err := r.inventory(ctx); err != nil {
		r.add(CatWorkloads, Fail, "cannot list opted-in Deployments", err.Error(),
			"the identity in use needs list on deployments.apps "+r.cfg.scope())
		return
	}
	namespaces := map[string]bool{}
	for _, d := range r.deployments {
		namespaces[d.namespace] = true
	}
	if len(r.deployments) == 0 {
		r.add(CatWorkloads, Warn, "no Deployment is opted in "+r.cfg.scope(), "",
			"label a Deployment "+rollout.LabelEnabled+"=true to let canaryd manage its rollouts")
		return
	}
	r.add(CatWorkloads, OK, fmt.Sprintf("%s opted in across %s", plural(len(r.deployments), "Deployment"), plural(len(namespaces), "namespace")), "", "")
	bad := 0
	for _, d := range r.deployments {
		if d.specErr == nil {
			continue
		}
		bad++
		r.add(CatWorkloads, Fail, fmt.Sprintf("%s has invalid canaryd annotations: canaryd changes nothing for it", d.key()),
			d.specErr.Error(), "fix the annotations named above; canaryd raises an InvalidConfig event until then")
	}
	if bad == 0 {
		r.add(CatWorkloads, OK, "every opted-in Deployment's canaryd annotations are valid", "", "")
	}
}

// injection checks that the pods of every opted-in Deployment get the
// Linkerd proxy: without it there is no split and no metrics.
//
// A missing injection is a warning, not a failure: injection may come from
// elsewhere (a mutating webhook selecting by label, a proxy added by the
// pipeline), and its consequence that matters, no proxy metrics, is what
// the Prometheus checks measure and fail on.
func (r *run) injection(ctx context.Context) {
	if r.deployments == nil {
		return // inventory failed; already reported
	}
	if len(r.deployments) == 0 {
		r.add(CatInjection, OK, "no opted-in Deployment to check", "", "")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	byNS := map[string][]deployment{}
	var order []string
	for _, d := range r.deployments {
		if _, ok := byNS[d.namespace]; !ok {
			order = append(order, d.namespace)
		}
		byNS[d.namespace] = append(byNS[d.namespace], d)
	}
	for _, ns := range order {
		// canaryd's own identity may not read namespaces (it needs not):
		// then only the pod templates are known.
		nsInject, unread := "", error(nil)
		if obj, err := r.cfg.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			unread = err
		} else {
			nsInject = obj.Annotations[annotationInject]
		}
		var unmeshed []string
		for _, d := range byNS[ns] {
			v := d.inject
			if v == "" {
				v = nsInject
			}
			if v != injectEnabled && v != injectIngress {
				unmeshed = append(unmeshed, d.name)
			}
		}
		switch {
		case unread != nil && len(unmeshed) > 0:
			r.add(CatInjection, Warn, fmt.Sprintf("cannot read namespace %s, and the pod templates of %s do not ask for Linkerd injection",
				ns, list(unmeshed, 3)), unread.Error(),
				"run the check with an identity that may get namespaces, or annotate the pod templates "+annotationInject+"="+injectEnabled)
		case len(unmeshed) == 0 && nsInject == injectEnabled:
			r.add(CatInjection, OK, fmt.Sprintf("namespace %s has %s=%s", ns, annotationInject, injectEnabled), "", "")
		case len(unmeshed) == 0:
			r.add(CatInjection, OK, fmt.Sprintf("the opted-in Deployments of namespace %s ask for Linkerd injection in their pod templates", ns), "", "")
		default:
			found := "no " + annotationInject + " annotation"
			if nsInject != "" {
				found = fmt.Sprintf("%s=%s", annotationInject, nsInject)
			}
			r.add(CatInjection, Warn, fmt.Sprintf("namespace %s has %s: %s will not be meshed", ns, found, list(unmeshed, 3)),
				"without the Linkerd proxy, the split routes nothing and Prometheus has no metrics for the analysis",
				fmt.Sprintf("kubectl annotate namespace %s %s=%s (or annotate the pod templates), then restart the pods", ns, annotationInject, injectEnabled))
		}
	}
}
