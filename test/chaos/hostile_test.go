package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/canaryd/canaryd/rollout"
)

// checksFile defines one real custom check, so that canaryd.io/analysis has
// a name to accept and the hostile names below are refused for what they
// are, not merely for being unknown.
const checksFile = `checks:
  - name: error-share
    query: |
      sum(rate(response_total{namespace="{{.namespace}}",deployment="{{.canary}}",direction="inbound",classification="failure"}[{{.interval}}])) or vector(0)
    max: 0.5
`

// hostile is one annotation value crafted to break a parser: too big,
// non-ASCII digits, negative, overflowing, or PromQL injected where a check
// name goes. Each must be refused with a Warning naming its key.
var hostile = []struct {
	name, key, value string
}{
	{"huge steps", rollout.KeySteps, strings.Repeat("100m,", 40000) + "1000m"},
	{"fullwidth digits", rollout.KeySteps, "１００m,５００m"},
	{"arabic-indic digits", rollout.KeyMaxFailures, "٣"},
	{"negative step", rollout.KeySteps, "-100m,500m"},
	{"overflowing step", rollout.KeySteps, "99999999999999999999999m"},
	{"NaN step", rollout.KeySteps, "NaN"},
	{"negative interval", rollout.KeyInterval, "-1m"},
	{"overflowing interval", rollout.KeyInterval, "9999999999999999999h"},
	{"interval with a unicode unit", rollout.KeyInterval, "1ｍ"},
	{"overflowing max-failures", rollout.KeyMaxFailures, "9223372036854775808"},
	{"negative max-failures", rollout.KeyMaxFailures, "-1"},
	{"NaN success rate", rollout.KeyMinSuccessRate, "NaN"},
	{"infinite success rate", rollout.KeyMinSuccessRate, "1e309"},
	{"zero latency", rollout.KeyMaxLatencyP99, "0s"},
	{"exponent min-requests", rollout.KeyMinRequests, "1e3"},
	{"overflowing deadline", rollout.KeyProgressDeadline, "99999999999h"},
	{"PromQL in a check name", rollout.KeyAnalysis, `error-share"} or vector(1) #`},
	{"PromQL selector in a check name", rollout.KeyAnalysis, `x{namespace=~".+"}`},
	{"label matcher break-out", rollout.KeyAnalysis, `error-share,",deployment=~".*`},
	{"unicode check name", rollout.KeyAnalysis, "érror-share"},
	{"NUL in the router", rollout.KeyRouter, "smi\x00"},
	{"service with a quote", rollout.KeyService, `web"}`},
	{"window of 10^8 hours", rollout.KeyWindow, "* * * * * 99999999h"},
	{"window with a shell tail", rollout.KeyWindow, "0 9 * * 1-5 8h; rm -rf /"},
	{"shouting on-inconclusive", rollout.KeyOnInconclusive, "ROLLBACK"},
	{"manual-promotion prose", rollout.KeyManualPromotion, "yes please"},
}

// TestHostileAnnotationValuesWarnAndRouteNothing opts in one Deployment per
// hostile value: each gets an InvalidConfig Warning that names the key (and
// stays short, however big the value), no object of canaryd's, no pause; and
// canaryd does not die. Then an app mid-rollout gets a hostile value: the
// split must not move until it is fixed, and the rollout then finishes.
func TestHostileAnnotationValuesWarnAndRouteNothing(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	fresh := begin("hostile annotation values (fresh apps)", "start → InvalidConfig event", len(hostile))
	mid := begin("hostile annotation value mid-rollout", "edit → InvalidConfig event", 1)
	w := newWorld(t, "chaos-hostile")
	checks := filepath.Join(t.TempDir(), "checks.yaml")
	if err := os.WriteFile(checks, []byte(checksFile), 0o644); err != nil {
		t.Fatal(err)
	}
	w.extra = []string{"--checks-file", checks}
	var apps []*app
	w.unaudited = true // they must never get a split: ownedObjects checks that
	for i, h := range hostile {
		apps = append(apps, w.app(fmt.Sprintf("hostile-%02d", i), 1, map[string]string{h.key: h.value}, healthy, 0))
	}
	w.unaudited = false
	live := w.app("live", 2, nil, healthy, 40)
	start := time.Now()
	w.start()

	converged, violations := 0, 0
	var worst time.Duration
	for i, h := range hostile {
		a := apps[i]
		ok := poll(time.Minute, func() (bool, error) { return len(a.events("InvalidConfig")) > 0, nil })
		if !ok {
			t.Errorf("%s (%s=%.40q): no InvalidConfig event", h.name, h.key, h.value)
			continue
		}
		worst = max(worst, time.Since(start))
		ev := a.events("InvalidConfig")[0]
		switch {
		case ev.Type != "Warning" || !strings.Contains(ev.Message, h.key):
			t.Errorf("%s: event %s %q does not name %s", h.name, ev.Type, ev.Message, h.key)
			violations++
		case len(ev.Message) > 2048:
			t.Errorf("%s: a %d-byte event message is not a clear one", h.name, len(ev.Message))
			violations++
		default:
			converged++
		}
		if d, err := a.deployment(); err == nil && d.Spec.Paused {
			t.Errorf("%s: the Deployment was paused despite invalid configuration", h.name)
			violations++
		}
		for what, get := range a.ownedObjects() {
			if err := get(); !apierrors.IsNotFound(err) {
				t.Errorf("%s: canaryd made a %s (%v)", h.name, what, err)
				violations++
			}
		}
	}
	if w.logHas("panic") {
		t.Error("canaryd's log mentions a panic")
		violations++
	}
	violations += w.deaths()
	fresh.end(converged, violations, worst)

	// Mid-rollout, a bad value freezes the routing where it is.
	live.adopted()
	live.deploy("example.com/live:2.0", healthy)
	live.waitStatus("step 1", 2*time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step == 1 })
	live.waitSplitAtStatus()
	before := len(live.auditor.Changes())
	edited := time.Now()
	live.annotate(rollout.KeySteps, "100m,５００m")
	w.waitFor("InvalidConfig on the live app", 30*time.Second, func() (bool, error) { return len(live.events("InvalidConfig")) > 0, nil })
	recovery := time.Since(edited)
	time.Sleep(2 * interval)
	midViolations := 0
	if n := len(live.auditor.Changes()); n != before {
		t.Errorf("the split moved while the configuration was invalid: %v", live.auditor.Weights())
		midViolations++
	}
	if st, _ := live.status(); st.Step != 1 || !strings.Contains(st.Message, rollout.KeySteps) {
		t.Errorf("status while invalid: %+v", st)
		midViolations++
	}
	live.annotate(rollout.KeySteps, "100m,200m,500m")
	live.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged = 1
	if why := live.endedPromoted("example.com/live:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	midViolations += live.violations() + w.deaths()
	mid.end(converged, midViolations, recovery)
}
