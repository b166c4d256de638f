package kube

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

func registered(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	m := newMetrics()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// value reads one gauge or counter (the client library's testutil would
// need a dependency the module does not have).
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Gauge != nil {
		return out.Gauge.GetValue()
	}
	return out.Counter.GetValue()
}

func TestMetricsCountARolloutEventOnlyWhenItsDecisionWrote(t *testing.T) {
	m, _ := registered(t)
	started := rollout.Decision{
		Status: rollout.Status{Phase: rollout.PhaseProgressing, Step: 1, Weight: 100, Failures: 1},
		Events: []rollout.Event{{Reason: "RolloutStarted"}, {Reason: "StepAdvanced"}},
	}
	// The status patch conflicted: nothing was written, the decision is made again.
	m.observeDecision("shop/web", started, 0)
	m.observeDecision("shop/web", started, 3)
	if got := value(t, m.rollouts.WithLabelValues("shop", "web", "started")); got != 1 {
		t.Errorf("rollouts started = %v, want 1 (the failed attempt must not count)", got)
	}
	if got := value(t, m.writes); got != 3 {
		t.Errorf("writes = %v, want 3", got)
	}
	for name, want := range map[string]float64{"weight": 100, "step": 1, "failures": 1} {
		g := map[string]*prometheus.GaugeVec{"weight": m.weight, "step": m.step, "failures": m.failures}[name]
		if got := value(t, g.WithLabelValues("shop", "web")); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, p := range phases {
		want := 0.0
		if p == rollout.PhaseProgressing {
			want = 1
		}
		if got := value(t, m.phase.WithLabelValues("shop", "web", string(p))); got != want {
			t.Errorf("phase %s = %v, want %v", p, got, want)
		}
	}
}

func TestMetricsKeepOnlyTheLastVerdictHotAndBothSidesOfACheck(t *testing.T) {
	m, _ := registered(t)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Inconclusive}, time.Millisecond)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Fail,
		Canary: analysis.Numbers{Requests: 120, SuccessRate: 95, LatencyP99Ms: 40},
		Stable: analysis.Numbers{Requests: 1000, SuccessRate: 99.9, LatencyP99Ms: 20}}, time.Millisecond)
	for _, v := range verdictValues {
		want := 0.0
		if v == analysis.Fail {
			want = 1
		}
		if got := value(t, m.lastVerdict.WithLabelValues("shop", "web", string(v))); got != want {
			t.Errorf("last verdict %s = %v, want %v", v, got, want)
		}
	}
	if got := value(t, m.verdicts.WithLabelValues("shop", "web", "Inconclusive")); got != 1 {
		t.Errorf("Inconclusive verdicts = %v, want 1", got)
	}
	if c, s := value(t, m.checkValue.WithLabelValues("shop", "web", "success_rate")),
		value(t, m.stableValue.WithLabelValues("shop", "web", "success_rate")); c != 95 || s != 99.9 {
		t.Errorf("success rate canary %v stable %v, want 95 and 99.9", c, s)
	}
}

func TestMetricsForgetDropsEveryPerDeploymentSeriesOfThatDeploymentOnly(t *testing.T) {
	m, reg := registered(t)
	for _, key := range []string{"shop/web", "shop/api"} {
		m.observeCheck(key, analysis.Result{Verdict: analysis.Pass}, time.Millisecond)
		m.observeDecision(key, rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseSucceeded},
			Events: []rollout.Event{{Reason: "Promoted"}}}, 1)
	}
	m.forget("shop/web")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	apiSeries := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch labels["deployment"] {
			case "web":
				t.Errorf("%s still has a series of the forgotten Deployment: %v", mf.GetName(), labels)
			case "api":
				apiSeries++
			}
		}
	}
	// api keeps 9 phases, weight, step, failures, 3+3 values, 4 verdict flags, 1 verdict counter, 1 rollout counter.
	if apiSeries != 9+3+6+4+1+1 {
		t.Errorf("the other Deployment has %d series, want %d", apiSeries, 9+3+6+4+1+1)
	}
}

func TestMetricsExposeEveryDocumentedFamily(t *testing.T) {
	m, reg := registered(t)
	m.observeSync(time.Millisecond, nil)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Pass}, time.Millisecond)
	m.observeDecision("shop/web", rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseIdle},
		Events: []rollout.Event{{Reason: "RolloutStarted"}}}, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"canaryd_rollout_phase", "canaryd_canary_weight_milli", "canaryd_rollout_step",
		"canaryd_rollout_failed_checks", "canaryd_check_value", "canaryd_check_stable_value", "canaryd_check_last_verdict",
		"canaryd_check_verdicts_total", "canaryd_rollouts_total", "canaryd_reconcile_duration_seconds",
		"canaryd_reconcile_errors_total", "canaryd_check_duration_seconds", "canaryd_api_writes_total",
		"canaryd_workqueue_depth", "canaryd_leader"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("family %s is not exposed (have %v)", want, names)
		}
	}
}
