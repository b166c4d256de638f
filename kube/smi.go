package kube

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/canaryd/canaryd/rollout"
)

func smiGVR(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "split.smi-spec.io", Version: version, Resource: "trafficsplits"}
}

// smiRouter writes the SMI TrafficSplit "foo": root service = the apex,
// backends foo-stable and foo-canary. v1alpha1 weights are quantities in
// milli that sum to 1000m ("900m"/"100m"); v1alpha2 weights are integers
// that sum to 100.
type smiRouter struct {
	dyn     dynamic.Interface
	version string
}

func (r *smiRouter) gvr() schema.GroupVersionResource { return smiGVR(r.version) }

// observe returns the canary weight in milli, or nil when there is no split
// of canaryd's shape (absent, or edited into another shape: it is rewritten).
func (r *smiRouter) observe(l cache.GenericLister, ns, foo string) (*int, error) {
	obj, err := l.ByNamespace(ns).Get(foo)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading TrafficSplit %s: %w", foo, err)
	}
	u, ok, err := asUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("reading TrafficSplit %s: %w", foo, err)
	}
	if !ok {
		return nil, nil
	}
	return r.weightOf(u, foo), nil
}

// weightOf is the canary weight in milli that u carries, or nil when u is
// not canaryd's split for foo.
func (r *smiRouter) weightOf(u *unstructured.Unstructured, foo string) *int {
	if !isOurs(u, foo) {
		return nil
	}
	backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
	var stable, canary int64 = -1, -1
	for _, b := range backends {
		m, _ := b.(map[string]any)
		w, ok := r.weight(m["weight"])
		if !ok {
			return nil
		}
		switch m["service"] {
		case stableName(foo):
			stable = w
		case canaryName(foo):
			canary = w
		}
	}
	if len(backends) != 2 || stable < 0 || canary < 0 || stable+canary != r.total() {
		return nil
	}
	milli := int(canary * 1000 / r.total())
	return &milli
}

func (r *smiRouter) total() int64 {
	if r.version == "v1alpha2" {
		return 100
	}
	return 1000
}

// weight reads a backend weight in the router's unit.
func (r *smiRouter) weight(v any) (int64, bool) {
	switch w := v.(type) {
	case int64:
		if r.version == "v1alpha1" {
			return w * 1000, true // a bare integer quantity: 1 = 1000m
		}
		return w, true
	case float64:
		return int64(w), r.version == "v1alpha2"
	case string:
		if r.version == "v1alpha2" {
			n, err := strconv.ParseInt(w, 10, 64)
			return n, err == nil
		}
		q, err := resource.ParseQuantity(w)
		if err != nil {
			return 0, false
		}
		return q.MilliValue(), true
	}
	return 0, false
}

func (r *smiRouter) backends(foo string, milli int) []any {
	canary, stable := any(nil), any(nil)
	if r.version == "v1alpha2" {
		c := int64(milli / 10)
		canary, stable = c, 100-c
	} else {
		canary, stable = fmt.Sprintf("%dm", milli), fmt.Sprintf("%dm", 1000-milli)
	}
	return []any{
		map[string]any{"service": stableName(foo), "weight": stable},
		map[string]any{"service": canaryName(foo), "weight": canary},
	}
}

// apply makes the split carry milli for the canary. It writes only when the
// observed split differs, and updates carry the cached resourceVersion.
func (r *smiRouter) apply(ctx context.Context, l cache.GenericLister, foo *appsv1.Deployment, apex parent, milli int) (bool, error) {
	client := r.dyn.Resource(smiGVR(r.version)).Namespace(foo.Namespace)
	spec := map[string]any{"service": apex.Name, "backends": r.backends(foo.Name, milli)}
	obj, err := l.ByNamespace(foo.Namespace).Get(foo.Name)
	if apierrors.IsNotFound(err) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": smiGVR(r.version).GroupVersion().String(),
			"kind":       "TrafficSplit",
			"spec":       spec,
		}}
		u.SetName(foo.Name)
		u.SetNamespace(foo.Namespace)
		u.SetLabels(map[string]string{rollout.LabelManaged: foo.Name})
		u.SetOwnerReferences([]metav1.OwnerReference{ownerRef(foo)})
		if _, err := client.Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
			return false, fmt.Errorf("creating TrafficSplit %s: %w", foo.Name, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading TrafficSplit %s: %w", foo.Name, err)
	}
	u, ok, err := asUnstructured(obj)
	if err != nil {
		return false, fmt.Errorf("reading TrafficSplit %s: %w", foo.Name, err)
	}
	if !ok {
		return false, fmt.Errorf("reading TrafficSplit %s: cached as %T", foo.Name, obj)
	}
	if w := r.weightOf(u, foo.Name); w != nil && *w == milli {
		if svc, _, _ := unstructured.NestedString(u.Object, "spec", "service"); svc == apex.Name {
			return false, nil
		}
	}
	u.Object["spec"] = spec
	labels := u.GetLabels()
	labels[rollout.LabelManaged] = foo.Name
	u.SetLabels(labels)
	if _, err := client.Update(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return false, fmt.Errorf("updating TrafficSplit %s to canary weight %dm: %w", foo.Name, milli, err)
	}
	return true, nil
}

func (r *smiRouter) delete(ctx context.Context, l cache.GenericLister, ns, foo string) error {
	if _, err := l.ByNamespace(ns).Get(foo); apierrors.IsNotFound(err) {
		return nil
	}
	err := r.dyn.Resource(smiGVR(r.version)).Namespace(ns).Delete(ctx, foo, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting TrafficSplit %s: %w", foo, err)
	}
	return nil
}
