package meshsim

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestOddObjectsAreSkippedNotFatal feeds the simulator objects with missing, mistyped and out-of-range
// fields. It must neither panic nor let them disturb a well-formed apex next to them.
func TestOddObjectsAreSkippedNotFatal(t *testing.T) {
	var c cluster
	good := c.workload("good", 1, nil)
	odd := c.workload("odd", 1, ann(
		annErrorRate, "lots", annLatencyMs, "-3", annLatencyP99Ms, "1", annStatusCode, "999"))
	c.service("good", ann(annRPS, "10"), true, good...)
	c.service("odd", ann(annRPS, "fast", annHeaders, "x=y:0.9,z=w:0.9"), true, odd...)
	c.service("odd2", nil, true, odd...)
	c.serve(gvrSplitV1a1, gvrGateway)

	for name, spec := range map[string]map[string]any{
		"no-spec-service":  {"backends": []any{map[string]any{"service": "good", "weight": "1"}}},
		"bad-quantity":     {"service": "odd2", "backends": []any{map[string]any{"service": "good", "weight": "lots"}}},
		"negative":         {"service": "odd2", "backends": []any{map[string]any{"service": "good", "weight": int64(-5)}}},
		"backends-string":  {"service": "odd2", "backends": "good"},
		"backend-not-map":  {"service": "odd2", "backends": []any{"good"}},
		"weight-missing":   {"service": "odd2", "backends": []any{map[string]any{"service": "good"}}},
		"weight-bool":      {"service": "odd2", "backends": []any{map[string]any{"service": "good", "weight": true}}},
		"all-zero":         {"service": "nonexistent", "backends": []any{map[string]any{"service": "good", "weight": "0"}}},
		"empty-backends":   {"service": "odd2", "backends": []any{}},
		"service-not-text": {"service": int64(3)},
	} {
		c.custom(gvrSplitV1a1, "TrafficSplit", name, 1, spec)
	}
	for name, spec := range map[string]map[string]any{
		"parents-string":   {"parentRefs": "odd", "rules": []any{}},
		"rules-not-list":   {"parentRefs": []any{serviceParent("odd")}, "rules": "x"},
		"rule-not-map":     {"parentRefs": []any{serviceParent("odd")}, "rules": []any{"x"}},
		"bad-regex":        {"parentRefs": []any{serviceParent("odd")}, "rules": []any{map[string]any{"matches": []any{map[string]any{"path": map[string]any{"type": "RegularExpression", "value": "("}}}}}},
		"float-weight":     {"parentRefs": []any{serviceParent("odd")}, "rules": []any{map[string]any{"backendRefs": []any{map[string]any{"name": "odd", "weight": 0.5}}}}},
		"header-no-name":   {"parentRefs": []any{serviceParent("odd")}, "rules": []any{map[string]any{"matches": []any{map[string]any{"headers": []any{map[string]any{"value": "v"}}}}}}},
		"unknown-path":     {"parentRefs": []any{serviceParent("odd")}, "rules": []any{map[string]any{"matches": []any{map[string]any{"path": map[string]any{"type": "Glob"}}}}}},
		"backend-other-ns": {"parentRefs": []any{serviceParent("odd")}, "rules": []any{map[string]any{"backendRefs": []any{map[string]any{"kind": "Bucket", "name": "x"}}}}},
		"no-spec":          nil,
	} {
		c.custom(gvrGateway, "HTTPRoute", name, 2, spec)
	}
	s, _ := c.start(t, Config{Seed: 10, DefaultRPS: 1})
	run(s, 10*time.Second)

	st := s.Stats()
	if got := st[Route{ns, "good", "good"}]; got.Requests != 100 || got.Failures+got.NoEndpoint != 0 {
		t.Errorf("good apex = %+v, want 100 successful requests", got)
	}
	// The odd Service's bad rps falls back to the default (1 rps), its bad headers to none; the odd pod's
	// annotations fall back to defaults: no errors.
	if got := st[Route{ns, "odd", "odd"}]; got.Requests != 10 || got.Failures+got.NoEndpoint != 0 {
		t.Errorf("odd apex = %+v, want 10 successful requests at the default rate", got)
	}
}

func TestCRDsServedOnlyInAnUnpreferredVersionAreStillWatched(t *testing.T) {
	v1alpha4 := schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha4", Resource: "trafficsplits"}
	var c cluster
	stable := c.workload("web", 1, nil)
	c.service("web", ann(annRPS, "10"), true)
	c.service("web-stable", nil, true, stable...)
	c.serve(v1alpha4)
	c.custom(v1alpha4, "TrafficSplit", "web", 0, map[string]any{
		"service":  "web",
		"backends": []any{map[string]any{"service": "web-stable", "weight": int64(100)}},
	})
	s, _ := c.start(t, Config{})
	if gvr := s.watch.watched[kindTrafficSplit]; gvr != v1alpha4 {
		t.Fatalf("watching %v, want %v", gvr, v1alpha4)
	}
	run(s, time.Second)
	if got := s.Stats()[Route{ns, "web", "web-stable"}].Requests; got != 10 {
		t.Errorf("requests to web-stable = %d, want 10", got)
	}
}
