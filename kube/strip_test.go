package kube

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

func TestACachedSplitLosesItsManagedFieldsOnly(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "resourceVersion": "42",
			"managedFields": []any{map[string]any{"manager": "canaryd", "fieldsV1": map[string]any{"f:spec": map[string]any{}}}}},
		"spec": map[string]any{"service": "web", "backends": []any{map[string]any{"service": "web-stable", "weight": "900m"}}},
	}}
	obj, err := stripForCache(u)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*unstructured.Unstructured)
	if got.GetManagedFields() != nil {
		t.Error("managedFields kept")
	}
	if got.GetResourceVersion() != "42" || got.Object["spec"] == nil {
		t.Errorf("stripped too much: %v", got.Object)
	}
}
