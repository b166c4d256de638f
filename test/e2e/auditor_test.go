package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/canaryd/canaryd/test/audit"
)

// The traffic auditor lives in test/audit, shared with the chaos suite;
// these wrappers keep the scenarios' vocabulary.

var splitGVR = audit.SplitGVR

type auditor struct{ *audit.Auditor }

func startAuditor(ctx context.Context, t *testing.T, ns, app string) *auditor {
	a, err := audit.Start(ctx, audit.Config{Client: env.client, Dynamic: env.dyn, Namespace: ns, App: app, Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return &auditor{a}
}

func (a *auditor) stop() { a.Stop() }

func (a *auditor) weights() []int { return a.Weights() }

func (a *auditor) firstTraffic() (on, off time.Time) { return a.FirstTraffic() }

// check fails the test on every invariant the auditor saw broken. The
// interval it paces steps by is the fixture's, given at start.
func (a *auditor) check(t *testing.T, _ time.Duration) {
	t.Helper()
	for _, v := range a.Violations() {
		t.Errorf("invariant broken: %s", v)
	}
}

func readyEndpoints(ctx context.Context, ns, svc string) (int, error) {
	return audit.ReadyEndpoints(ctx, env.client, ns, svc)
}
