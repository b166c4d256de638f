package meshsim

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func serviceParent(name string) map[string]any {
	return map[string]any{"group": "core", "kind": "Service", "name": name, "port": int64(9898)}
}

func backendRef(name string, weight int64) map[string]any {
	return map[string]any{"name": name, "port": int64(9898), "weight": weight}
}

// abCluster is an apex "web" whose requests carry x-canary: always 10 % of the time, with stable and canary
// backends, and the given route resources served.
func abCluster(served ...schema.GroupVersionResource) *cluster {
	c := &cluster{}
	stable := c.workload("web", 1, nil)
	canary := c.workload("web-canary", 1, nil)
	c.service("web", ann(annRPS, "100", annHeaders, "x-canary=always:0.1"), true)
	c.service("web-stable", nil, true, stable...)
	c.service("web-canary", nil, true, canary...)
	c.serve(served...)
	return c
}

func TestHTTPRouteHeaderMatchSendsOnlyMatchingRequestsToCanary(t *testing.T) {
	for _, gvr := range []schema.GroupVersionResource{gvrGateway, gvrPolicy} {
		t.Run(gvr.Group, func(t *testing.T) {
			c := abCluster(gvr)
			c.custom(gvr, "HTTPRoute", "web", 0, map[string]any{
				"parentRefs": []any{serviceParent("web")},
				"rules": []any{
					// The catch-all comes first: precedence, not order, must send x-canary to the canary.
					map[string]any{"backendRefs": []any{backendRef("web-stable", 1)}},
					map[string]any{
						"matches": []any{map[string]any{
							"path":    map[string]any{"type": "PathPrefix", "value": "/"},
							"headers": []any{map[string]any{"name": "X-Canary", "value": "always"}},
						}},
						"backendRefs": []any{backendRef("web-canary", 1)},
					},
				},
			})
			s, _ := c.start(t, Config{Seed: 6})
			run(s, 100*time.Second) // 10000 requests

			st := s.Stats()
			toCanary := st[Route{ns, "web", "web-canary"}].Requests
			toStable := st[Route{ns, "web", "web-stable"}].Requests
			if toCanary+toStable != 10000 {
				t.Fatalf("requests = %d + %d, want 10000; stats %v", toStable, toCanary, st)
			}
			withinBinomial(t, "header-matched requests to canary", toCanary, 10000, 0.1)
		})
	}
}

func TestHTTPRouteWeightsAndFallbacks(t *testing.T) {
	tests := []struct {
		name        string
		rules       []any
		wantCanary  float64 // expected share to web-canary
		wantApex    float64 // expected share sent to the parent itself
		wantNoRoute float64 // expected share answered by the proxy (no rule matched / all weights 0)
	}{
		{
			name:       "weighted backendRefs 800/200",
			rules:      []any{map[string]any{"backendRefs": []any{backendRef("web-stable", 800), backendRef("web-canary", 200)}}},
			wantCanary: 0.2,
		},
		{
			name: "a header nobody sends matches nothing",
			rules: []any{
				map[string]any{
					"matches":     []any{map[string]any{"headers": []any{map[string]any{"name": "x-user", "value": "beta"}}}},
					"backendRefs": []any{backendRef("web-canary", 1)},
				},
				map[string]any{"backendRefs": []any{backendRef("web-stable", 1)}},
			},
		},
		{
			name: "regular expression header match",
			rules: []any{
				map[string]any{
					"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "RegularExpression", "name": "x-canary", "value": "^al.*s$"}}}},
					"backendRefs": []any{backendRef("web-canary", 1)},
				},
				map[string]any{"backendRefs": []any{backendRef("web-stable", 1)}},
			},
			wantCanary: 0.1,
		},
		{
			name: "no catch-all: unmatched requests get no route",
			rules: []any{map[string]any{
				"matches":     []any{map[string]any{"headers": []any{map[string]any{"name": "x-canary", "value": "always"}}}},
				"backendRefs": []any{backendRef("web-canary", 1)},
			}},
			wantCanary:  0.1,
			wantNoRoute: 0.9,
		},
		{
			name:     "a rule without backendRefs sends to the parent",
			rules:    []any{map[string]any{"matches": []any{map[string]any{"path": map[string]any{"value": "/"}}}}},
			wantApex: 1,
		},
		{
			name:        "all weights 0",
			rules:       []any{map[string]any{"backendRefs": []any{backendRef("web-stable", 0), backendRef("web-canary", 0)}}},
			wantNoRoute: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := abCluster(gvrGateway)
			c.custom(gvrGateway, "HTTPRoute", "web", 0, map[string]any{
				"parentRefs": []any{serviceParent("web")},
				"rules":      tt.rules,
			})
			s, _ := c.start(t, Config{Seed: 7})
			run(s, 100*time.Second) // 10000 requests

			st := s.Stats()
			withinBinomial(t, "requests to canary", st[Route{ns, "web", "web-canary"}].Requests, 10000, tt.wantCanary)
			withinBinomial(t, "requests to the parent", st[Route{ns, "web", "web"}].Requests, 10000, tt.wantApex)
			withinBinomial(t, "requests without a route", st[Route{ns, "web", ""}].Requests, 10000, tt.wantNoRoute)
			stable := 1 - tt.wantCanary - tt.wantApex - tt.wantNoRoute
			withinBinomial(t, "requests to stable", st[Route{ns, "web", "web-stable"}].Requests, 10000, stable)
		})
	}
}

func TestTrafficSplitWinsOverHTTPRoute(t *testing.T) {
	c := abCluster(gvrGateway, gvrSplitV1a1)
	c.custom(gvrGateway, "HTTPRoute", "web", 0, map[string]any{
		"parentRefs": []any{serviceParent("web")},
		"rules":      []any{map[string]any{"backendRefs": []any{backendRef("web-canary", 1)}}},
	})
	c.custom(gvrSplitV1a1, "TrafficSplit", "web", 0, map[string]any{
		"service":  "web",
		"backends": []any{map[string]any{"service": "web-stable", "weight": "1"}},
	})
	s, _ := c.start(t, Config{Seed: 8})
	run(s, 10*time.Second)

	st := s.Stats()
	if got := st[Route{ns, "web", "web-stable"}].Requests; got != 1000 {
		t.Errorf("requests to stable = %d, want all 1000: the TrafficSplit's ServiceProfile overrides the route; stats %v", got, st)
	}
}

func TestHTTPRouteWithGatewayParentIsNotOurs(t *testing.T) {
	c := abCluster(gvrGateway)
	c.custom(gvrGateway, "HTTPRoute", "ingress", 0, map[string]any{
		// kind defaults to Gateway for parentRefs: this route belongs to an ingress, not to the mesh.
		"parentRefs": []any{map[string]any{"name": "web"}},
		"rules":      []any{map[string]any{"backendRefs": []any{backendRef("web-canary", 1)}}},
	})
	s, _ := c.start(t, Config{Seed: 9})
	run(s, 10*time.Second)

	if got := s.Stats()[Route{ns, "web", "web"}].Requests; got != 1000 {
		t.Errorf("requests to the apex itself = %d, want 1000; stats %v", got, s.Stats())
	}
}
