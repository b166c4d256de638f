package meshsim

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynfake "k8s.io/client-go/dynamic/fake"
	kfake "k8s.io/client-go/kubernetes/fake"
)

const ns = "test"

var (
	gvrSplitV1a1 = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}
	gvrSplitV1a2 = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
	gvrGateway   = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	gvrPolicy    = schema.GroupVersionResource{Group: "policy.linkerd.io", Version: "v1beta3", Resource: "httproutes"}
)

// cluster is a fake API server's content, built by the helpers below.
type cluster struct {
	objs    []runtime.Object // typed: Services, EndpointSlices, Pods, ReplicaSets
	dynObjs []runtime.Object // unstructured: TrafficSplits, HTTPRoutes
	served  []schema.GroupVersionResource
	nextIP  int
}

// workload adds a Deployment's ReplicaSet and n running pods with the given annotations, and returns the pods.
func (c *cluster) workload(deploy string, n int, ann map[string]string) []*corev1.Pod {
	rsName := deploy + "-5d8f7c"
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: rsName, UID: types.UID("uid-" + rsName),
		OwnerReferences: []metav1.OwnerReference{ctrlRef("Deployment", deploy)},
	}}
	c.objs = append(c.objs, rs)
	var pods []*corev1.Pod
	for i := range n {
		c.nextIP++
		name := fmt.Sprintf("%s-%d", rsName, i)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: name, UID: types.UID("uid-" + name),
				Labels:          map[string]string{"app": deploy, "pod-template-hash": "5d8f7c"},
				Annotations:     ann,
				OwnerReferences: []metav1.OwnerReference{ctrlRef("ReplicaSet", rsName)},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 9898}},
			}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.42.0.%d", c.nextIP)},
		}
		c.objs = append(c.objs, p)
		pods = append(pods, p)
	}
	return pods
}

func ctrlRef(kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{Kind: kind, Name: name, Controller: &yes, UID: types.UID("uid-" + name)}
}

// service adds a Service and an EndpointSlice listing pods, all with the given readiness.
func (c *cluster) service(name string, ann map[string]string, ready bool, pods ...*corev1.Pod) {
	c.objs = append(c.objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann}})
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name + "-abcde",
		Labels: map[string]string{discoveryv1.LabelServiceName: name},
	}}
	for _, p := range pods {
		r := ready
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: &r},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name},
		})
	}
	c.objs = append(c.objs, es)
}

// custom adds an unstructured object of the given resource, created at minute age.
func (c *cluster) custom(gvr schema.GroupVersionResource, kind, name string, age int, spec map[string]any) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(),
		"kind":       kind,
		"metadata": map[string]any{
			"namespace":         ns,
			"name":              name,
			"uid":               "uid-" + name,
			"creationTimestamp": time.Date(2026, 1, 1, 0, age, 0, 0, time.UTC).Format(time.RFC3339),
		},
		"spec": spec,
	}}
	c.dynObjs = append(c.dynObjs, u)
}

func (c *cluster) serve(gvrs ...schema.GroupVersionResource) { c.served = append(c.served, gvrs...) }

// start builds a Sim on fake clientsets holding the cluster, waits for its caches and builds the first world.
func (c *cluster) start(t testing.TB, cfg Config) (*Sim, *kfake.Clientset) {
	t.Helper()
	kube := kfake.NewClientset(c.objs...)
	disc := kube.Discovery().(*fakediscovery.FakeDiscovery)
	for _, gvr := range c.served {
		disc.Resources = append(disc.Resources, &metav1.APIResourceList{
			GroupVersion: gvr.GroupVersion().String(),
			APIResources: []metav1.APIResource{{Name: gvr.Resource, Namespaced: true}},
		})
	}
	listKinds := map[schema.GroupVersionResource]string{}
	for _, gvr := range append([]schema.GroupVersionResource{gvrSplitV1a1, gvrSplitV1a2, gvrGateway, gvrPolicy}, c.served...) {
		kind := "HTTPRouteList"
		if gvr.Group == gvrSplitV1a1.Group {
			kind = "TrafficSplitList"
		}
		listKinds[gvr] = kind
	}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, c.dynObjs...)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := newSim(cfg, kube, dyn, disc)
	if err != nil {
		t.Fatalf("newSim: %v", err)
	}
	if err := s.watch.start(t.Context()); err != nil {
		t.Fatalf("start watchers: %v", err)
	}
	s.step(0)
	return s, kube
}

// run advances the simulation by d in 100 ms steps.
func run(s *Sim, d time.Duration) {
	for range int(d / (100 * time.Millisecond)) {
		s.step(100 * time.Millisecond)
	}
}

// withinBinomial fails the test unless got is within 5 standard deviations of n·p: for a correct simulator
// that happens about once in 1.7 million runs; with a fixed seed it never flakes.
func withinBinomial(t *testing.T, what string, got, n uint64, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if d := float64(got) - mean; d > 5*sd || d < -5*sd {
		t.Errorf("%s = %d of %d, want %.0f ± %.0f (p = %v)", what, got, n, mean, 5*sd, p)
	}
}

func ann(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// exposition returns a pod's /metrics body as the simulator would serve it.
func exposition(t *testing.T, s *Sim, pod string) string {
	t.Helper()
	body, ok := s.podMetrics(ns, pod)
	if !ok {
		t.Fatalf("no exposition for pod %s", pod)
	}
	return string(body)
}

func hasLine(text, prefix string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

var deleteNow = metav1.DeleteOptions{}

// waitFor steps the simulator without traffic until cond holds, for changes that travel through an informer.
func waitFor(t *testing.T, s *Sim, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(10 * time.Millisecond)
		s.step(0)
	}
}
