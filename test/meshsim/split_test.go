package meshsim

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// parseExposition parses a text exposition the way Prometheus does, failing the test on a syntax error.
func parseExposition(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return fams
}

// simCounter reads meshsim_requests_total for one apex, backend and outcome from the simulator's registry.
func simCounter(t *testing.T, s *Sim, service, backend, outcome string) float64 {
	t.Helper()
	fams, err := s.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := map[string]string{"namespace": ns, "service": service, "backend": backend, "outcome": outcome}
	for _, f := range fams {
		if f.GetName() != "meshsim_requests_total" {
			continue
		}
	metrics:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if want[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// podRequests is a pod's request_total as Prometheus would read it.
func podRequests(t *testing.T, s *Sim, pod string) uint64 {
	t.Helper()
	fam := parseExposition(t, exposition(t, s, pod))["request_total"]
	if fam == nil || len(fam.Metric) != 1 {
		t.Fatalf("pod %s: want one request_total series, got %v", pod, fam)
	}
	return uint64(fam.Metric[0].GetCounter().GetValue())
}

func TestTrafficSplitSendsTheCanaryItsWeight(t *testing.T) {
	tests := []struct {
		name    string
		gvr     schema.GroupVersionResource
		weights [2]any // stable, canary
	}{
		{"v1alpha1 quantities 900m/100m", gvrSplitV1a1, [2]any{"900m", "100m"}},
		{"v1alpha1 integers 9/1", gvrSplitV1a1, [2]any{int64(9), int64(1)}},
		{"v1alpha2 integers 90/10", gvrSplitV1a2, [2]any{int64(90), int64(10)}},
		// linkerd-smi serves v1alpha2 without conversion: a v1alpha1 object read through it still says "900m".
		{"v1alpha2 read of a v1alpha1 object", gvrSplitV1a2, [2]any{"900m", "100m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c cluster
			stable := c.workload("web", 2, nil)
			canary := c.workload("web-canary", 1, nil)
			c.service("web", ann(annRPS, "100"), true)
			c.service("web-stable", nil, true, stable...)
			c.service("web-canary", nil, true, canary...)
			c.serve(tt.gvr)
			c.custom(tt.gvr, "TrafficSplit", "web", 0, map[string]any{
				"service": "web",
				"backends": []any{
					map[string]any{"service": "web-stable", "weight": tt.weights[0]},
					map[string]any{"service": "web-canary", "weight": tt.weights[1]},
				},
			})
			s, _ := c.start(t, Config{Seed: 1})

			run(s, 200*time.Second) // 100 rps × 200 s = 20000 requests

			st := s.Stats()
			toStable := st[Route{ns, "web", "web-stable"}].Requests
			toCanary := st[Route{ns, "web", "web-canary"}].Requests
			if total := toStable + toCanary; total != 20000 {
				t.Fatalf("requests = %d, want exactly 20000 (rate × time with carry); stats %v", total, st)
			}
			withinBinomial(t, "requests to canary", toCanary, 20000, 0.1)

			// The pods' own counters agree with the simulator's, and round robin spreads the stable share.
			if got := podRequests(t, s, canary[0].Name); got != toCanary {
				t.Errorf("canary pod request_total = %d, want %d", got, toCanary)
			}
			a, b := podRequests(t, s, stable[0].Name), podRequests(t, s, stable[1].Name)
			if d := int64(a) - int64(b); a+b != toStable || d < -1 || d > 1 {
				t.Errorf("stable pods request_total = %d, %d; want %d split evenly", a, b, toStable)
			}
		})
	}
}

func TestBackendWithoutReadyEndpointsFailsAsNoEndpoint(t *testing.T) {
	var c cluster
	stable := c.workload("web", 1, nil)
	canary := c.workload("web-canary", 1, nil)
	c.service("web", ann(annRPS, "50"), true)
	c.service("web-stable", nil, true, stable...)
	c.service("web-canary", nil, false, canary...) // the canary pod exists but is not ready
	c.serve(gvrSplitV1a1)
	c.custom(gvrSplitV1a1, "TrafficSplit", "web", 0, map[string]any{
		"service": "web",
		"backends": []any{
			map[string]any{"service": "web-stable", "weight": "500m"},
			map[string]any{"service": "web-canary", "weight": "500m"},
		},
	})
	s, _ := c.start(t, Config{Seed: 2})

	run(s, 100*time.Second) // 5000 requests

	st := s.Stats()
	can := st[Route{ns, "web", "web-canary"}]
	stb := st[Route{ns, "web", "web-stable"}]
	if can.Requests != can.NoEndpoint || can.Failures != 0 {
		t.Errorf("canary backend counts = %+v, want every request a no_endpoint failure", can)
	}
	withinBinomial(t, "no_endpoint requests", can.NoEndpoint, 5000, 0.5)
	if stb.NoEndpoint != 0 || stb.Failures != 0 {
		t.Errorf("stable backend counts = %+v, want all successes", stb)
	}
	if got := podRequests(t, s, canary[0].Name); got != 0 {
		t.Errorf("not-ready canary pod counted %d requests, want 0: no_endpoint is the simulator's, not a pod's", got)
	}
	if got := podRequests(t, s, stable[0].Name); got != stb.Requests {
		t.Errorf("stable pod request_total = %d, want %d", got, stb.Requests)
	}
	if got := simCounter(t, s, "web", "web-canary", "no_endpoint"); uint64(got) != can.NoEndpoint {
		t.Errorf("meshsim_requests_total{outcome=no_endpoint} = %v, want %d", got, can.NoEndpoint)
	}
}

func TestApexWithoutSplitSendsToItself(t *testing.T) {
	var c cluster
	pods := c.workload("api", 1, nil)
	c.service("api", ann(annRPS, "3"), true, pods...)
	c.service("quiet", ann(annRPS, "0"), true) // 0 = no traffic, even with a default rate
	s, _ := c.start(t, Config{Seed: 3, DefaultRPS: 5})

	run(s, 10*time.Second)

	st := s.Stats()
	if got := st[Route{ns, "api", "api"}].Requests; got != 30 {
		t.Errorf("api requests = %d, want 30 (3 rps for 10 s)", got)
	}
	if got, ok := st[Route{ns, "quiet", "quiet"}]; ok {
		t.Errorf("quiet got traffic %+v, want none", got)
	}
}

// After an API server outage the pod cache can lag behind the EndpointSlices
// for tens of seconds (client-go reflectors reconnect with backoff): a ready
// endpoint whose pod the cache lacks is read from the API server, not
// dropped, so its requests are not counted as finding no endpoint.
func TestAnEndpointWhosePodTheCacheLacksIsReadLive(t *testing.T) {
	var c cluster
	pods := c.workload("web", 1, nil)
	c.service("web", ann(annRPS, "100"), true, pods...)
	s, kube := c.start(t, Config{Seed: 1})
	forget := func() { // the pod cache loses the pod; the slice still names it
		for _, st := range s.watch.stores[kindPod] {
			if err := st.Delete(pods[0]); err != nil {
				t.Fatal(err)
			}
		}
		s.watch.gen.Add(1)
	}
	forget()
	run(s, 10*time.Second)
	if st := s.Stats()[Route{ns, "web", "web"}]; st.Requests != 1000 || st.NoEndpoint != 0 {
		t.Fatalf("with the pod only in the API server: %+v, want 1000 requests and none without an endpoint", st)
	}
	// And a pod that is gone from the API server too is still no endpoint.
	if err := kube.CoreV1().Pods(ns).Delete(t.Context(), pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	forget()
	run(s, 10*time.Second)
	if st := s.Stats()[Route{ns, "web", "web"}]; st.NoEndpoint == 0 {
		t.Fatalf("a pod gone from the API server still served: %+v", st)
	}
}

// A pod the cache holds but that is not meshed is not read live: the scale
// benchmark's 1,800 unmeshed Deployments would otherwise cost a read per
// endpoint on every rebuild of the world, starving the simulator and
// loading the API server.
func TestAnUnmeshedPodInTheCacheIsNotReadLive(t *testing.T) {
	var c cluster
	pods := c.workload("plain", 3, ann(annInject, "disabled"))
	c.service("plain", nil, true, pods...)
	s, kube := c.start(t, Config{Seed: 1})
	for i := 0; i < 5; i++ {
		s.watch.gen.Add(1)
		run(s, time.Second)
	}
	for _, a := range kube.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
			t.Fatalf("an unmeshed pod the cache holds was read live: %v", a)
		}
	}
}

// An apex with several TrafficSplits is routed by the oldest (ties by name), whatever order the cache lists
// them in, as a ServiceProfile takes the first split linkerd-smi saw.
func TestTheOldestOfAnApexsTrafficSplitsRoutesIt(t *testing.T) {
	for _, oldest := range []string{"a", "b", "c"} {
		t.Run("oldest "+oldest, func(t *testing.T) {
			var c cluster
			c.service("web", ann(annRPS, "10"), true)
			for _, b := range []string{"a", "b", "c"} {
				c.service("web-"+b, nil, true, c.workload("web-"+b, 1, nil)...)
				age := 5
				if b == oldest {
					age = 1
				}
				c.serve(gvrSplitV1a1)
				c.custom(gvrSplitV1a1, "TrafficSplit", "web-split-"+b, age, map[string]any{
					"service":  "web",
					"backends": []any{map[string]any{"service": "web-" + b, "weight": "1000m"}},
				})
			}
			s, _ := c.start(t, Config{Seed: 1})
			w := s.buildWorld()
			if len(w.apexes) != 1 || w.apexes[0].split == nil || w.apexes[0].split.name != ns+"/web-split-"+oldest {
				t.Fatalf("apexes %d, split %+v, want web routed by web-split-%s", len(w.apexes), w.apexes[0].split, oldest)
			}
			// The rest tie on age: a rebuild from the remembered parses picks the same one.
			if w2 := s.buildWorld(); w2.apexes[0].split.name != ns+"/web-split-"+oldest {
				t.Errorf("second rebuild routes by %s", w2.apexes[0].split.name)
			}
			run(s, 10*time.Second)
			st := s.Stats()
			if got := st[Route{ns, "web", "web-" + oldest}].Requests; got != 100 {
				t.Errorf("requests to web-%s = %d, want all 100; stats %v", oldest, got, st)
			}
		})
	}
}
