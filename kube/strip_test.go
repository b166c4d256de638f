package kube

import (
	"reflect"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/canaryd/canaryd/rollout"
)

func TestACachedSliceKeepsOnlyWhatReadinessNeeds(t *testing.T) {
	yes, no := true, false
	node, port := "kwok-0", int32(8080)
	ep := func(ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.244.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ready},
			NodeName: &node, TargetRef: nil}
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-stable-x", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web-stable"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "endpointslice-controller"}}},
		Endpoints: []discoveryv1.Endpoint{ep(&yes), ep(&no), ep(nil)},
		Ports:     []discoveryv1.EndpointPort{{Port: &port}},
	}
	obj, err := stripForCache(sl)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*discoveryv1.EndpointSlice)
	if got.Labels[discoveryv1.LabelServiceName] != "web-stable" || got.ManagedFields != nil || got.Ports != nil {
		t.Errorf("metadata or ports: %+v", got.ObjectMeta)
	}
	if len(got.Endpoints) != 3 {
		t.Fatalf("%d endpoints, want 3", len(got.Endpoints))
	}
	for i, e := range got.Endpoints {
		if e.Addresses != nil || e.NodeName != nil {
			t.Errorf("endpoint %d keeps %+v", i, e)
		}
	}
	// readyEndpoints counts ready and unknown: 2 of 3, as before stripping.
	n := 0
	for _, e := range got.Endpoints {
		if e.Conditions.Ready == nil || *e.Conditions.Ready {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d ready endpoints after stripping, want 2", n)
	}
}

func TestACachedRouteReadsBackWholeButItsManagedFields(t *testing.T) {
	want := map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "resourceVersion": "42", "uid": "u-1",
			"generation": int64(3), "creationTimestamp": "2026-12-08T01:00:00Z",
			"labels":      map[string]any{rollout.LabelManaged: "web"},
			"annotations": map[string]any{"team": "shop"},
			"finalizers":  []any{"example.com/keep"},
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u-0",
				"controller": true, "blockOwnerDeletion": true}}},
		// Numbers come back as client-go decodes them: a whole weight as
		// int64 (v1alpha1 reads a bare 1 as 1000m), a fraction as float64.
		"spec": map[string]any{"service": "web", "backends": []any{
			map[string]any{"service": "web-stable", "weight": "900m"},
			map[string]any{"service": "web-canary", "weight": int64(1)},
			map[string]any{"service": "web-x", "weight": 0.5}}},
		"status": map[string]any{"note": "kept"},
	}
	in := (&unstructured.Unstructured{Object: want}).DeepCopy()
	unstructured.SetNestedSlice(in.Object, []any{map[string]any{"manager": "canaryd", "fieldsV1": map[string]any{"f:spec": map[string]any{}}}}, "metadata", "managedFields")
	obj, err := stripForCache(in)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := obj.(*cachedObject)
	if !ok {
		t.Fatalf("cached as %T, want *cachedObject", obj)
	}
	if c.GetResourceVersion() != "42" || c.GetLabels()[rollout.LabelManaged] != "web" || c.ManagedFields != nil {
		t.Errorf("metadata as cached: %+v", c.ObjectMeta)
	}
	got, ok, err := asUnstructured(c)
	if err != nil || !ok {
		t.Fatalf("reading back: %v %v", ok, err)
	}
	if !reflect.DeepEqual(want, got.Object) {
		t.Errorf("read back\n%#v\nwant\n%#v", got.Object, want)
	}
	// A reader's copy is its own: changing it leaves the cache as it was.
	got.Object["spec"] = map[string]any{}
	got.SetLabels(nil)
	again, _, _ := asUnstructured(c.DeepCopyObject())
	if !reflect.DeepEqual(want, again.Object) {
		t.Errorf("the cache changed through a reader's copy:\n%#v", again.Object)
	}
}
