package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

const checksYAML = `checks:
  - name: canary-5xx-per-second
    query: |
      sum(rate(response_total{namespace="{{.namespace}}",deployment="{{.canary}}",direction="inbound",classification="failure"}[{{.interval}}])) or vector(0)
    max: 0.05
`

// A custom PromQL check from the daemon's --checks-file is evaluated on the
// real Prometheus: a canary whose 5xx rate breaks its bound is rolled back
// by it, and an annotation naming an undefined check is refused.
func TestCustomChecksFromTheChecksFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "checks.yaml")
	if err := os.WriteFile(file, []byte(checksYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	// Thresholds and a judge tolerance this canary meets, so that only the
	// custom check can fail it: 5% errors at 10% of 40 requests/s is ≈ 0.2
	// failures/s, four times the check's bound, and a success rate no window
	// falls under. (With 90 %, two failures among a probe's first five
	// requests, a few percent of runs, failed the threshold too: the probes
	// run from the canary's first scrape on.)
	f := given(t, "e2e-checks").app(map[string]string{
		rollout.KeyAnalysis:       "canary-5xx-per-second",
		rollout.KeyMinSuccessRate: "1",
		rollout.KeyMaxFailures:    "1",
	}, healthy).audit().canaryd("--checks-file", file, "--judge-tolerance", "20").adopted()

	f.deploy("example.com/web:2.0", map[string]string{"meshsim/error-rate": "0.05"})
	st := f.waitPhase(rollout.PhaseFailed, 3*time.Minute)
	if st.LastCheck == nil || !strings.Contains(st.LastCheck.Reason, "canary-5xx-per-second") || strings.Contains(st.LastCheck.Reason, "< 90%") {
		t.Errorf("rolled back, but not by the custom check alone: %+v", st.LastCheck)
	}
	t.Logf("rolled back: %s", st.LastCheck.Reason)

	f.annotate(rollout.KeyAnalysis, "no-such-check")
	ev := f.waitEvent("InvalidConfig", 30*time.Second)
	if !strings.Contains(ev.Message, `unknown check "no-such-check"; defined: canary-5xx-per-second`) {
		t.Errorf("event %q", ev.Message)
	}
	f.auditor.check(t, interval)
}
