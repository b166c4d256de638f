package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var splitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}

// auditor samples the app's TrafficSplit and its backends' ready endpoints
// every 100 ms and records every breach of DESIGN.md's routing invariants:
// weight on a backend without a ready endpoint, weights not summing to
// 1000m, a step up sooner than the interval after the previous change.
type auditor struct {
	mu         sync.Mutex
	violations []string
	changes    []weightChange // canary weight over time, one entry per change
	cancel     context.CancelFunc
	done       chan struct{}
}

type weightChange struct {
	at     time.Time
	canary int // milli; -1: no split
}

func startAuditor(ctx context.Context, t *testing.T, ns, app string) *auditor {
	ctx, cancel := context.WithCancel(ctx)
	a := &auditor{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				a.sample(ctx, ns, app)
			}
		}
	}()
	t.Cleanup(a.stop)
	return a
}

func (a *auditor) stop() {
	a.cancel()
	<-a.done
}

func (a *auditor) sample(ctx context.Context, ns, app string) {
	u, err := env.dyn.Resource(splitGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{})
	canary := -1
	if err == nil {
		weights := map[string]int64{}
		backends, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
		var sum int64
		for _, b := range backends {
			m, _ := b.(map[string]any)
			q, err := resource.ParseQuantity(fmt.Sprint(m["weight"]))
			if err != nil {
				a.violate("unparsable weight %v", m["weight"])
				continue
			}
			svc, _ := m["service"].(string)
			weights[svc] = q.MilliValue()
			sum += q.MilliValue()
		}
		if sum != 1000 {
			a.violate("weights sum to %dm, not 1000m: %v", sum, weights)
		}
		for svc, w := range weights {
			if w == 0 {
				continue
			}
			n, err := readyEndpoints(ctx, ns, svc)
			if err != nil && ctx.Err() == nil {
				a.violate("reading endpoints of %s: %v", svc, err)
			}
			if err == nil && n == 0 {
				a.violate("%s has weight %dm and no ready endpoint", svc, w)
			}
		}
		canary = int(weights[app+"-canary"])
	} else if !apierrors.IsNotFound(err) {
		return // an API hiccup is not a routing fact
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.changes); n == 0 || a.changes[n-1].canary != canary {
		a.changes = append(a.changes, weightChange{at: time.Now(), canary: canary})
	}
}

func readyEndpoints(ctx context.Context, ns, svc string) (int, error) {
	list, err := env.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

func (a *auditor) violate(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.violations) < 50 {
		a.violations = append(a.violations, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

// weights is the sequence of canary weights seen (no split: -1).
func (a *auditor) weights() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int
	for _, c := range a.changes {
		out = append(out, c.canary)
	}
	return out
}

// check fails the test on any violation, and on a step up between two
// analysis steps sooner than the interval (less the sampling period).
func (a *auditor) check(t *testing.T, interval time.Duration) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.violations {
		t.Errorf("invariant broken: %s", v)
	}
	for i := 1; i < len(a.changes); i++ {
		prev, cur := a.changes[i-1], a.changes[i]
		if prev.canary > 0 && cur.canary > prev.canary && cur.canary < 1000 {
			if gap := cur.at.Sub(prev.at); gap < interval-200*time.Millisecond {
				t.Errorf("step %dm → %dm came %s after the previous change (interval %s)", prev.canary, cur.canary, gap, interval)
			}
		}
	}
}

// firstTraffic is when the canary first had weight, and firstZero when it
// next went back to 0 after that.
func (a *auditor) firstTraffic() (on, off time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.changes {
		if on.IsZero() && c.canary > 0 {
			on = c.at
		} else if !on.IsZero() && c.canary == 0 {
			return on, c.at
		}
	}
	return on, off
}
