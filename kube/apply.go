package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/canaryd/canaryd/rollout"
)

// errStale: the cache is behind the API server; look again shortly.
var errStale = errors.New("cache is behind the API server")

// writer applies one decision for one Deployment. Writes go in a fixed
// order: foo first (the status, i.e. the intent, and spec.paused), then the
// canary Deployment, the Services, the split. Rollout's gating makes each
// write safe on its own: weight only rises onto ready canary pods, scale-downs
// only follow a weight already observed at 0.
type writer struct {
	c      *Controller
	s      *informerSet
	foo    *appsv1.Deployment
	writes int
	// fresh is set once foo's cached copy is known to be current: after our
	// own patch succeeded (it carried the cached resourceVersion), or after a
	// live read agreed with the cache.
	fresh bool
}

// patchFoo writes the status, drops consumed commands and sets spec.paused,
// in one merge patch that carries foo's cached resourceVersion: if anyone
// changed foo since the snapshot, the patch fails with a conflict and the
// decision is made again from a fresh read.
func (w *writer) patchFoo(ctx context.Context, dec rollout.Decision, removeStatus bool) error {
	foo := w.foo
	ann := map[string]any{}
	if enc := dec.Status.Encode(); !removeStatus && foo.Annotations[rollout.AnnotationStatus] != enc {
		ann[rollout.AnnotationStatus] = enc
	}
	if removeStatus {
		if _, ok := foo.Annotations[rollout.AnnotationStatus]; ok {
			ann[rollout.AnnotationStatus] = nil
		}
	}
	for _, k := range dec.RemoveAnnotations {
		ann[k] = nil
	}
	patch := map[string]any{}
	if len(ann) > 0 {
		patch["metadata"] = map[string]any{"annotations": ann}
	}
	if dec.Desired != nil && dec.Desired.Paused != foo.Spec.Paused {
		patch["spec"] = map[string]any{"paused": dec.Desired.Paused}
	}
	if len(patch) == 0 {
		return nil
	}
	meta, _ := patch["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		patch["metadata"] = meta
	}
	meta["resourceVersion"] = foo.ResourceVersion
	body, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encoding patch of %s: %w", foo.Name, err)
	}
	updated, err := w.c.cfg.Client.AppsV1().Deployments(foo.Namespace).Patch(ctx, foo.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return fmt.Errorf("writing status of %s: %w", foo.Name, err)
	}
	w.writes++
	w.fresh = true
	w.foo = updated
	w.c.noteWritten(foo.Namespace+"/"+foo.Name, updated.ResourceVersion)
	return nil
}

// ensureFresh guards writes derived from a status that was not just written:
// if the cached foo is older than the API server's, a decision from it could
// undo a newer one, so we give up this round and wait for the cache.
//
// A cached foo at the version canaryd's own last write produced holds
// canaryd's last decision, which is what such a write could undo; it needs no
// read. A newer change by someone else (a command, an edit) is then met by
// the status write that follows, which carries that version and conflicts.
func (w *writer) ensureFresh(ctx context.Context) error {
	if w.fresh {
		return nil
	}
	if w.c.holdsOwnWrite(w.foo.Namespace+"/"+w.foo.Name, w.foo.ResourceVersion) {
		w.fresh = true
		return nil
	}
	live, err := w.c.cfg.Client.AppsV1().Deployments(w.foo.Namespace).Get(ctx, w.foo.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading %s: %w", w.foo.Name, err)
	}
	if live.ResourceVersion != w.foo.ResourceVersion {
		return errStale
	}
	w.fresh = true
	return nil
}

// applyCanary creates or updates foo-canary.
func (w *writer) applyCanary(ctx context.Context, ds *rollout.Desired, revision string) error {
	foo := w.foo
	cur, err := w.s.owned.Deployments(foo.Namespace).Get(canaryName(foo.Name))
	if apierrors.IsNotFound(err) {
		if !ds.CanaryTemplate || ds.CanaryReplicas == 0 {
			return nil
		}
		if err := w.ensureFresh(ctx); err != nil {
			return err
		}
		d := canaryDeployment(foo, ds.CanaryReplicas, revision)
		if _, err := w.c.cfg.Client.AppsV1().Deployments(foo.Namespace).Create(ctx, d, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
			return fmt.Errorf("creating %s: %w", d.Name, err)
		}
		w.writes++
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", canaryName(foo.Name), err)
	}
	if !isOurs(cur, foo.Name) {
		return fmt.Errorf("deployment %s exists and is not canaryd's (no %s=%s label): rename it or choose another name", cur.Name, rollout.LabelManaged, foo.Name)
	}
	next := cur.DeepCopy()
	if ds.CanaryTemplate && cur.Annotations[rollout.AnnotationRevision] != revision {
		want := canaryDeployment(foo, ds.CanaryReplicas, revision)
		next.Spec.Template = want.Spec.Template
		next.Spec.Strategy, next.Spec.MinReadySeconds = want.Spec.Strategy, want.Spec.MinReadySeconds
		next.Annotations = maps.Clone(cur.Annotations)
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[rollout.AnnotationRevision] = revision
	}
	next.Spec.Replicas = &ds.CanaryReplicas
	if replicas(cur.Spec.Replicas) == ds.CanaryReplicas && cur.Annotations[rollout.AnnotationRevision] == next.Annotations[rollout.AnnotationRevision] {
		return nil
	}
	if err := w.ensureFresh(ctx); err != nil {
		return err
	}
	if _, err := w.c.cfg.Client.AppsV1().Deployments(foo.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("updating %s to %d replicas: %w", next.Name, ds.CanaryReplicas, err)
	}
	w.writes++
	return nil
}

// applyServices makes foo-stable and foo-canary select the right pods with
// the apex's ports, and creates the apex if the user has none. It returns
// the ports.
func (w *writer) applyServices(ctx context.Context, ds *rollout.Desired, apexName string) ([]corev1.ServicePort, error) {
	foo := w.foo
	sel, err := podSelector(foo)
	if err != nil {
		return nil, err
	}
	apex, err := w.s.services.Services(foo.Namespace).Get(apexName)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Service %s: %w", apexName, err)
	}
	if apierrors.IsNotFound(err) {
		apex = nil
	}
	ports, err := servicePorts(foo, apex)
	if err != nil {
		return nil, err
	}
	if apex == nil {
		svc := service(foo, apexName, sel, ports)
		svc.OwnerReferences = nil // the apex is what clients call: it outlives canaryd's management
		if err := w.create(ctx, svc); err != nil {
			return nil, err
		}
	}
	stableSel := maps.Clone(sel)
	stableSel[appsv1.DefaultDeploymentUniqueLabelKey] = ds.StableHash
	canarySel := maps.Clone(sel)
	canarySel[rollout.LabelRole] = rollout.RoleCanary
	for _, want := range []*corev1.Service{
		service(foo, stableName(foo.Name), stableSel, ports),
		service(foo, canaryName(foo.Name), canarySel, ports),
	} {
		if err := w.applyService(ctx, want); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

func (w *writer) create(ctx context.Context, svc *corev1.Service) error {
	if err := w.ensureFresh(ctx); err != nil {
		return err
	}
	if _, err := w.c.cfg.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("creating Service %s: %w", svc.Name, err)
	}
	w.writes++
	return nil
}

func (w *writer) applyService(ctx context.Context, want *corev1.Service) error {
	cur, err := w.s.services.Services(want.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		return w.create(ctx, want)
	}
	if err != nil {
		return fmt.Errorf("reading Service %s: %w", want.Name, err)
	}
	if !isOurs(cur, w.foo.Name) {
		return fmt.Errorf("service %s exists and is not canaryd's (no %s=%s label): rename it", cur.Name, rollout.LabelManaged, w.foo.Name)
	}
	if maps.Equal(cur.Spec.Selector, want.Spec.Selector) && samePorts(cur.Spec.Ports, want.Spec.Ports) {
		return nil
	}
	if err := w.ensureFresh(ctx); err != nil {
		return err
	}
	next := cur.DeepCopy()
	next.Spec.Selector, next.Spec.Ports = want.Spec.Selector, want.Spec.Ports
	if _, err := w.c.cfg.Client.CoreV1().Services(next.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("updating Service %s: %w", next.Name, err)
	}
	w.writes++
	return nil
}

// deleteOwned removes canaryd's Services and foo-canary (offboarding).
func (w *writer) deleteOwned(ctx context.Context) error {
	foo := w.foo
	for _, name := range []string{stableName(foo.Name), canaryName(foo.Name)} {
		if svc, err := w.s.services.Services(foo.Namespace).Get(name); err == nil && isOurs(svc, foo.Name) {
			if err := w.c.cfg.Client.CoreV1().Services(foo.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting Service %s: %w", name, err)
			}
			w.writes++
		}
	}
	if d, err := w.s.owned.Deployments(foo.Namespace).Get(canaryName(foo.Name)); err == nil && isOurs(d, foo.Name) {
		if err := w.c.cfg.Client.AppsV1().Deployments(foo.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s: %w", d.Name, err)
		}
		w.writes++
	}
	return nil
}
