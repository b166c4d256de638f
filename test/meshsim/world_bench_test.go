package meshsim

import (
	"fmt"
	"testing"
)

// BenchmarkBuildWorld rebuilds the world of the scale benchmark's cluster at N = 2,000 (test/bench): every
// Deployment one pod, its apex Service, stable and canary Services and a TrafficSplit; a tenth of them meshed
// and taking traffic. During a wave the simulator rebuilds on every tick.
func BenchmarkBuildWorld(b *testing.B) {
	var c cluster
	c.serve(gvrSplitV1a1)
	for i := range 2000 {
		app := fmt.Sprintf("app%04d", i)
		podAnn, svcAnn := ann(annInject, "disabled"), map[string]string(nil)
		if i%10 == 0 {
			podAnn, svcAnn = nil, ann(annRPS, "40")
		}
		pods := c.workload(app, 1, podAnn)
		c.service(app, svcAnn, true, pods...)
		c.service(app+"-stable", nil, true, pods...)
		c.service(app+"-canary", nil, true)
		c.custom(gvrSplitV1a1, "TrafficSplit", app, i%60, map[string]any{
			"service": app,
			"backends": []any{
				map[string]any{"service": app + "-stable", "weight": "900m"},
				map[string]any{"service": app + "-canary", "weight": "100m"},
			},
		})
	}
	s, _ := c.start(b, Config{})
	w := s.buildWorld()
	if len(w.apexes) != 2000 || len(w.pods) != 200 {
		b.Fatalf("world has %d apexes and %d meshed pods, want 2000 and 200", len(w.apexes), len(w.pods))
	}
	for b.Loop() {
		s.buildWorld()
	}
}
