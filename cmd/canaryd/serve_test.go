package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestParseFlagsRefusesBadValuesNamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for no error
	}{
		{nil, ""},
		{[]string{"--workers", "16", "--kube-api-qps", "200", "--kube-api-burst", "400"}, ""},
		{[]string{"--workers", "0"}, "--workers 0: want at least 1"},
		{[]string{"--event-writers", "0"}, "--event-writers 0: want at least 1"},
		{[]string{"--kube-api-qps", "0"}, "--kube-api-qps 0: want more than 0"},
		{[]string{"--kube-api-qps", "NaN"}, "--kube-api-qps NaN: want more than 0"},
		{[]string{"--kube-api-burst", "-1"}, "--kube-api-burst -1: want at least 1"},
		{[]string{"--prometheus-headers", "novalue"}, `--prometheus-headers: "novalue" is not name=value`},
	} {
		o, err := parseFlags(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want == "" && (o.kubeQPS <= 0 || o.kubeBurst < 1 || o.workers < 1):
			t.Errorf("%v: options %+v", tc.args, o)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	o, err := parseFlags([]string{"--kube-api-qps", "200", "--kube-api-burst", "400"})
	if err != nil || o.kubeQPS != 200 || o.kubeBurst != 400 {
		t.Errorf("parsed %v, %v", o, err)
	}
}

func TestBuiltInTypesTravelAsProtobufCustomResourcesAsJSON(t *testing.T) {
	var mu sync.Mutex
	accept := map[string]string{} // path → Accept header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accept[r.URL.Path] = r.Header.Get("Accept")
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer srv.Close()
	rc := &rest.Config{Host: srv.URL}
	client, err := kubernetes.NewForConfig(protobuf(rc))
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = client.AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	_, _ = dyn.Resource(schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}).
		Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
	if got := accept["/apis/apps/v1/namespaces/shop/deployments/web"]; !strings.HasPrefix(got, "application/vnd.kubernetes.protobuf") {
		t.Errorf("Deployment read with Accept %q, want protobuf first", got)
	}
	if got := accept["/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits/web"]; got != "application/json" {
		t.Errorf("TrafficSplit read with Accept %q, want JSON", got)
	}
	if rc.ContentType != "" {
		t.Errorf("protobuf changed the config it was given: %q", rc.ContentType)
	}
}
