package chaos

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/canaryd/canaryd/test/audit"
)

// TestTheAuditorCatchesPlantedViolations proves the witness can testify:
// without canaryd, a split is written by hand on the real API server that
// sends weight to a Service with no endpoints, then one whose weights do not
// sum to 1000m, then a step up sooner than the interval. The auditor must
// report each, or every "0 violations" above means nothing.
func TestTheAuditorCatchesPlantedViolations(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	ctx := context.Background()
	ns := "chaos-auditor"
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "web-stable", "web-canary"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nothing-" + name},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		if _, err := env.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := audit.Start(ctx, audit.Config{Client: env.client, Dynamic: env.dyn, Namespace: ns, App: "web", Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	split := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{"service": "web", "backends": []any{
			map[string]any{"service": "web-stable", "weight": "900m"},
			map[string]any{"service": "web-canary", "weight": "100m"},
		}},
	}}
	res := env.dyn.Resource(audit.SplitGVR).Namespace(ns)
	if split, err = res.Create(ctx, split, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setWeights := func(stable, canary string) {
		t.Helper()
		_ = unstructured.SetNestedSlice(split.Object, []any{
			map[string]any{"service": "web-stable", "weight": stable},
			map[string]any{"service": "web-canary", "weight": canary},
		}, "spec", "backends")
		if split, err = res.Update(ctx, split, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Let the auditor see each state for a few samples.
	time.Sleep(500 * time.Millisecond)
	setWeights("900m", "200m") // sums to 1100m
	time.Sleep(500 * time.Millisecond)
	setWeights("700m", "300m") // 200m → 300m a second after 100m → 200m: early
	time.Sleep(500 * time.Millisecond)
	a.Stop()

	seen := map[string]int{}
	for _, v := range a.Violations() {
		seen[v.Rule]++
	}
	for _, rule := range []string{"void", "sum", "early-step"} {
		if seen[rule] == 0 {
			t.Errorf("the auditor did not report %q: %v", rule, a.Violations())
		}
	}
	if _, blind, err := a.Stats(); blind > 0 {
		t.Errorf("%d samples went unanswered (last: %v)", blind, err)
	}
}
