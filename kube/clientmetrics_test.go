package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestClassifyNamesVerbAndResourceNeverTheObject(t *testing.T) {
	for _, c := range []struct{ name, method, path, verb, resource string }{
		{"a named Deployment is a get", "GET", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "get", "deployments"},
		{"a collection is a list", "GET", "/api/v1/namespaces/{namespace}/services", "list", "services"},
		{"a cluster-wide collection is a list", "GET", "/apis/split.smi-spec.io/v1alpha1/trafficsplits", "list", "trafficsplits"},
		{"a merge patch", "PATCH", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "patch", "deployments"},
		{"a create posts to the collection", "POST", "/api/v1/namespaces/{namespace}/events", "create", "events"},
		{"an update of a subresource", "PUT", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", "update", "deployments/status"},
		{"a delete of one object", "DELETE", "/api/v1/namespaces/{namespace}/services/{name}", "delete", "services"},
		{"a delete of a collection", "DELETE", "/api/v1/namespaces/{namespace}/pods", "deletecollection", "pods"},
		{"a namespace itself", "GET", "/api/v1/namespaces/{name}", "get", "namespaces"},
		{"a namespace's status", "PUT", "/api/v1/namespaces/{name}/status", "update", "namespaces/status"},
		{"group discovery", "GET", "/apis/split.smi-spec.io/v1alpha1", "get", "discovery"},
		{"root discovery", "GET", "/apis", "get", "discovery"},
		{"an odd name never becomes a label", "GET", "/api/v1/namespaces/{namespace}/Weird_Name!/x", "get", "other"},
	} {
		t.Run(c.name, func(t *testing.T) {
			verb, resource := classify(c.method, c.path)
			if verb != c.verb || resource != c.resource {
				t.Errorf("classify(%s %s) = %s, %s; want %s, %s", c.method, c.path, verb, resource, c.verb, c.resource)
			}
		})
	}
}

// fakeAPIServer answers the few requests the test makes, on loopback, the
// way the API server would: a Deployment for GET and PATCH, a Service list,
// 404 for anything else.
func fakeAPIServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/apis/apps/v1/namespaces/shop/deployments/cart" && (r.Method == "GET" || r.Method == "PATCH"):
			_ = json.NewEncoder(w).Encode(&appsv1.Deployment{TypeMeta: metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"}})
		case r.URL.Path == "/api/v1/namespaces/shop/services" && r.Method == "GET":
			_ = json.NewEncoder(w).Encode(&corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(&metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientMetricsCountWhatWentOverTheWire(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterClientMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// A second registry gets the same collectors: a process has one set.
	if err := RegisterClientMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatalf("registering with a second registry: %v", err)
	}

	srv := fakeAPIServer(t)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	count := func(verb, resource string) uint64 { return histogramCount(t, reg, verb, resource) }
	getsBefore, patchesBefore, listsBefore := count("get", "deployments"), count("patch", "deployments"), count("list", "services")
	okBefore := counterValue(t, reg, "GET", "200")
	missBefore := counterValue(t, reg, "GET", "404")
	patchOKBefore := counterValue(t, reg, "PATCH", "200")

	for range 2 {
		if _, err := client.AppsV1().Deployments("shop").Get(ctx, "cart", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.AppsV1().Deployments("shop").Patch(ctx, "cart", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("shop").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("shop").Get(ctx, "nope", metav1.GetOptions{}); err == nil {
		t.Fatal("the fake API server found a Service it does not have")
	}

	if got := count("get", "deployments") - getsBefore; got != 2 {
		t.Errorf("get deployments counted %d times, want 2", got)
	}
	if got := count("patch", "deployments") - patchesBefore; got != 1 {
		t.Errorf("patch deployments counted %d times, want 1", got)
	}
	if got := count("list", "services") - listsBefore; got != 1 {
		t.Errorf("list services counted %d times, want 1", got)
	}
	if got := counterValue(t, reg, "GET", "200") - okBefore; got != 3 {
		t.Errorf("GET 200 counted %v times, want 3 (two gets, one list)", got)
	}
	if got := counterValue(t, reg, "GET", "404") - missBefore; got != 1 {
		t.Errorf("GET 404 counted %v times, want 1", got)
	}
	if got := counterValue(t, reg, "PATCH", "200") - patchOKBefore; got != 1 {
		t.Errorf("PATCH 200 counted %v times, want 1", got)
	}
	// No label value may carry a namespace or a name.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.Contains(l.GetValue(), "shop") || strings.Contains(l.GetValue(), "cart") {
					t.Errorf("%s has label %s=%q: names must not become label values", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// histogramCount is the sample count of canaryd_api_request_duration_seconds
// for one verb and resource in reg.
func histogramCount(t *testing.T, reg *prometheus.Registry, verb, resource string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "canaryd_api_request_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["verb"] == verb && labels["resource"] == resource {
				return mt.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// counterValue is canaryd_api_requests_total for one method and code in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "canaryd_api_requests_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}
