package meshsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
)

// TestPrometheusSeesSplitTrafficPerDeployment runs the simulator against the real local control plane (kwok
// pods) and its Prometheus: with 40 rps split 900m/100m, the proxy series relabelled as Linkerd-viz does must
// show about 36 rps for deployment="web" and 4 rps for deployment="web-canary".
func TestPrometheusSeesSplitTrafficPerDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and waits ~45 s of traffic")
	}
	if _, err := cluster.FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("CI is set and the control-plane binaries are missing: %v", err)
		}
		t.Skipf("control-plane binaries missing (run test/bootstrap.sh): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Prometheus: true})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})

	const ns = "meshsim-it"
	cs := kubernetes.NewForConfigOrDie(c.RESTConfig)
	dyn := dynamic.NewForConfigOrDie(c.RESTConfig)
	given(t, ctx, cs, dyn, ns)

	sim, err := meshsim.New(meshsim.Config{
		RESTConfig:  c.RESTConfig,
		TargetsFile: c.MeshTargetsFile,
		Seed:        11,
		Namespaces:  []string{ns},
	})
	if err != nil {
		t.Fatal(err)
	}
	simCtx, stopSim := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sim.Run(simCtx) }()
	t.Cleanup(func() {
		stopSim()
		if err := <-done; err != nil {
			t.Errorf("sim.Run: %v", err)
		}
	})

	// Wait until both backends answer: pods scheduled and Ready, EndpointSlices filled, targets published.
	stable := meshsim.Route{Namespace: ns, Service: "web", Backend: "web-stable"}
	canary := meshsim.Route{Namespace: ns, Service: "web", Backend: "web-canary"}
	eventually(t, 60*time.Second, "both backends served by ready pods", func() error {
		st := sim.Stats()
		before := st
		time.Sleep(time.Second)
		st = sim.Stats()
		for _, r := range []meshsim.Route{stable, canary} {
			if st[r].Requests == before[r].Requests || st[r].NoEndpoint != before[r].NoEndpoint {
				return fmt.Errorf("%s: %+v → %+v", r.Backend, before[r], st[r])
			}
		}
		return nil
	})

	// Let Prometheus (1 s scrapes) collect more than the 30 s window of clean traffic.
	time.Sleep(40 * time.Second)

	prom := c.Prometheus.URL
	for _, tc := range []struct {
		deployment string
		pods       float64
		rps        float64
		tolerance  float64
	}{
		// Over 30 s: stable ≈ 1080 requests, canary ≈ 120 (binomial sd ≈ 10) plus increase()'s extrapolation.
		{"web", 2, 36, 0.15},
		{"web-canary", 1, 4, 0.35},
	} {
		sel := fmt.Sprintf(`namespace=%q,deployment=%q,direction="inbound"`, ns, tc.deployment)
		got := query(t, prom, `sum(increase(response_total{`+sel+`}[30s]))`)
		want := tc.rps * 30
		t.Logf("deployment %s: increase over 30s = %.1f (expected %.0f)", tc.deployment, got, want)
		if got < want*(1-tc.tolerance) || got > want*(1+tc.tolerance) {
			t.Errorf("deployment %s: increase over 30s = %.0f, want %.0f ± %.0f%%", tc.deployment, got, want, tc.tolerance*100)
		}
		if n := query(t, prom, `count(count by (pod) (response_total{`+sel+`}))`); n != tc.pods {
			t.Errorf("deployment %s: series from %v pods, want %v", tc.deployment, n, tc.pods)
		}
	}
	if got := query(t, prom, fmt.Sprintf(`sum(response_total{namespace=%q,classification="failure"}) or vector(0)`, ns)); got != 0 {
		t.Errorf("failures = %v, want 0: no pod has an error rate", got)
	}
}

// given creates stable (2 pods) and canary (1 pod) Deployments, the apex and backend Services, and a
// TrafficSplit 900m/100m.
func given(t *testing.T, ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ns string) {
	t.Helper()
	must := func(what string, err error) {
		if err != nil {
			t.Fatalf("create %s: %v", what, err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	for name, track := range map[string]string{"web": "stable", "web-canary": "canary"} {
		replicas := map[string]int32{"stable": 2, "canary": 1}[track]
		labels := map[string]string{"app": "web", "track": track}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"meshsim/latency-ms": "20"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "example.com/web:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					}}},
				},
			},
		}
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		must("deployment "+name, err)
	}
	for name, sel := range map[string]map[string]string{
		"web":        {"app": "web"},
		"web-stable": {"app": "web", "track": "stable"},
		"web-canary": {"app": "web", "track": "canary"},
	} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
		}
		if name == "web" {
			svc.Annotations = map[string]string{"meshsim/rps": "40"}
		}
		_, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		must("service "+name, err)
	}
	ts := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha1",
		"kind":       "TrafficSplit",
		"metadata":   map[string]any{"name": "web"},
		"spec": map[string]any{
			"service": "web",
			"backends": []any{
				map[string]any{"service": "web-stable", "weight": "900m"},
				map[string]any{"service": "web-canary", "weight": "100m"},
			},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}
	_, err = dyn.Resource(gvr).Namespace(ns).Create(ctx, ts, metav1.CreateOptions{})
	must("trafficsplit", err)
}

// query runs an instant PromQL query that returns one sample and returns its value.
func query(t *testing.T, promURL, q string) float64 {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: decode: %v", q, err)
	}
	if body.Status != "success" || len(body.Data.Result) != 1 {
		t.Fatalf("query %s: status %s %s, %d results, want 1", q, body.Status, body.Error, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %v: %v", q, body.Data.Result[0].Value, err)
	}
	return v
}

func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
