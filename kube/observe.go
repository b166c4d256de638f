package kube

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/canaryd/canaryd/rollout"
)

// RevisionOf is canaryd's name for a pod template: a hash of it without the
// labels that only tell ReplicaSets apart (pod-template-hash) or mark canary
// pods. foo's template, the ReplicaSet it becomes and foo-canary's template
// thus share one revision. (The Deployment controller's own hash cannot be
// used: a paused Deployment creates no ReplicaSet for a new template.)
func RevisionOf(t *corev1.PodTemplateSpec) string {
	c := t.DeepCopy()
	delete(c.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(c.Labels, rollout.LabelRole)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		// A PodTemplateSpec read from the API always marshals.
		panic(fmt.Sprintf("kube: hashing pod template: %v", err))
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())[:10]
}

func canaryName(foo string) string { return foo + "-canary" }
func stableName(foo string) string { return foo + "-stable" }

// observe gathers the snapshot for foo from the caches.
func (c *Controller) observe(foo *appsv1.Deployment, enabled bool) (rollout.Observed, error) {
	s := c.setFor(foo.Namespace)
	o := rollout.Observed{
		Now:            c.cfg.Clock(),
		Defaults:       c.cfg.Defaults,
		Namespace:      foo.Namespace,
		Name:           foo.Name,
		Annotations:    foo.Annotations,
		Enabled:        enabled,
		Paused:         foo.Spec.Paused,
		Replicas:       replicas(foo.Spec.Replicas),
		Revision:       RevisionOf(&foo.Spec.Template),
		AnalysisPeriod: c.cfg.AnalysisPeriod,
		LastProbe:      c.lastProbe(foo.Namespace + "/" + foo.Name),
		ScrapedAt:      c.lastProbe("scraped/" + foo.Namespace + "/" + foo.Name),
		ScrapeInterval: c.cfg.ScrapeInterval,
		LastHook:       c.lastProbe("hook/" + foo.Namespace + "/" + foo.Name),
		Rollout: rollout.DeploymentRollout{
			ObservedCurrent: foo.Status.ObservedGeneration >= foo.Generation,
			Updated:         foo.Status.UpdatedReplicas,
			Available:       foo.Status.AvailableReplicas,
			Total:           foo.Status.Replicas,
		},
	}
	if o.Annotations == nil {
		o.Annotations = map[string]string{}
	}
	owned, err := s.replicaSetsOf(foo.UID)
	if err != nil {
		return o, fmt.Errorf("listing ReplicaSets: %w", err)
	}
	canary, err := s.owned.Deployments(foo.Namespace).Get(canaryName(foo.Name))
	if err != nil && !apierrors.IsNotFound(err) {
		return o, fmt.Errorf("reading %s: %w", canaryName(foo.Name), err)
	}
	for _, rs := range owned {
		o.ReplicaSets = append(o.ReplicaSets, rollout.ReplicaSet{
			Hash:      rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
			Revision:  rs.Revision,
			Replicas:  rs.Replicas,
			Available: rs.Available,
		})
	}
	if canary != nil && isOurs(canary, foo.Name) {
		canaryRS, err := s.replicaSetsOf(canary.UID)
		if err != nil {
			return o, fmt.Errorf("listing ReplicaSets: %w", err)
		}
		o.Canary = observeCanary(canary, canaryRS)
	}
	if svc, err := s.services.Services(foo.Namespace).Get(stableName(foo.Name)); err == nil && isOurs(svc, foo.Name) {
		o.StableServiceHash = svc.Spec.Selector[appsv1.DefaultDeploymentUniqueLabelKey]
	}
	if o.StableEndpoints, err = c.readyEndpoints(s, foo.Namespace, stableName(foo.Name)); err != nil {
		return o, err
	}
	if o.CanaryEndpoints, err = c.readyEndpoints(s, foo.Namespace, canaryName(foo.Name)); err != nil {
		return o, err
	}
	if r, l, err := c.routerFor(s, c.routerName(o.Annotations)); err == nil {
		if o.Weight, err = r.observe(l, foo.Namespace, foo.Name); err != nil {
			return o, err
		}
	}
	o.RouteBlocked = c.routeBlocked(s, foo, o.Annotations)
	return o, nil
}

// observeCanary reads foo-canary's readiness from its ReplicaSet for the
// current template: a Deployment's readyReplicas also counts pods of an older
// template that are still going away.
func observeCanary(d *appsv1.Deployment, owned []*cachedReplicaSet) *rollout.Canary {
	cn := &rollout.Canary{
		Revision: d.Annotations[rollout.AnnotationRevision],
		Replicas: replicas(d.Spec.Replicas),
		Current:  d.Status.ObservedGeneration >= d.Generation,
	}
	for _, rs := range owned {
		if rs.Revision == cn.Revision {
			cn.Ready = rs.Ready
			cn.Hash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
	}
	return cn
}

func (c *Controller) readyEndpoints(s *informerSet, ns, service string) (int, error) {
	slices, err := s.endpointSlicesOf(ns, service)
	if err != nil {
		return 0, fmt.Errorf("listing EndpointSlices of %s: %w", service, err)
	}
	n := 0
	for _, sl := range slices {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

type labelled interface{ GetLabels() map[string]string }

func isOurs(obj labelled, foo string) bool { return obj.GetLabels()[rollout.LabelManaged] == foo }

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
