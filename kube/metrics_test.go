package kube

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// The client library's testutil package would need a module (godebug/diff)
// this module does not require; its promlint and expfmt do not, and scrape and
// exposition below do what CollectAndCompare does.

func registered(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	m := newMetrics()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// scrape gathers reg and returns each gauge and counter sample by its
// series, written as in the exposition format with the labels sorted:
// canaryd_rollout_step{deployment="web",namespace="shop"}.
func scrape(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			series := mf.GetName()
			if len(labels) > 0 {
				series += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case s.Gauge != nil:
				out[series] = s.Gauge.GetValue()
			case s.Counter != nil:
				out[series] = s.Counter.GetValue()
			}
		}
	}
	return out
}

// of keeps the series of one family and one Deployment.
func of(series map[string]float64, family, deployment string) map[string]float64 {
	out := map[string]float64{}
	for s, v := range series {
		if strings.HasPrefix(s, family+"{") && strings.Contains(s, `deployment="`+deployment+`"`) {
			out[s] = v
		}
	}
	return out
}

// exposition renders the named families of reg in the text format /metrics
// serves.
func exposition(t *testing.T, reg prometheus.Gatherer, families ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, f := range families {
			if mf.GetName() == f {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return b.String()
}

func TestMetricsCountARolloutEventOnlyWhenItsDecisionWrote(t *testing.T) {
	m, reg := registered(t)
	started := rollout.Decision{
		Status: rollout.Status{Phase: rollout.PhaseProgressing, Step: 1, Weight: 100, Failures: 1},
		Events: []rollout.Event{{Reason: "RolloutStarted"}, {Reason: "StepAdvanced"}},
	}
	// The status patch conflicted: nothing was written, the decision is made again.
	m.observeDecision("shop/web", started, 0)
	m.observeDecision("shop/web", started, 3)
	got := scrape(t, reg)
	for series, want := range map[string]float64{
		`canaryd_rollouts_total{deployment="web",event="started",namespace="shop"}`: 1, // the failed attempt does not count
		`canaryd_api_writes_total`:                                                     3,
		`canaryd_canary_weight_milli{deployment="web",namespace="shop"}`:               100,
		`canaryd_rollout_step{deployment="web",namespace="shop"}`:                      1,
		`canaryd_rollout_failed_checks{deployment="web",namespace="shop"}`:             1,
		`canaryd_rollout_phase{deployment="web",namespace="shop",phase="Progressing"}`: 1,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (exposed: %v), want %v", series, v, ok, want)
		}
	}
	if n := len(of(got, "canaryd_rollouts_total", "web")); n != 1 {
		t.Errorf("%d rollouts_total series, want 1: events never counted have none", n)
	}
}

func TestMetricsShowOnlyThePhaseADeploymentIsIn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		phases []rollout.Phase
		want   map[string]float64
	}{
		{"a Deployment held after progressing shows Held, not Progressing",
			[]rollout.Phase{rollout.PhaseProgressing, rollout.PhaseHeld},
			map[string]float64{`canaryd_rollout_phase{deployment="web",namespace="shop",phase="Held"}`: 1}},
		{"a Deployment rolled back shows Failed only",
			[]rollout.Phase{rollout.PhaseProgressing, rollout.PhaseRollingBack, rollout.PhaseFailed},
			map[string]float64{`canaryd_rollout_phase{deployment="web",namespace="shop",phase="Failed"}`: 1}},
		{"a Deployment waiting to be adopted has no phase series",
			[]rollout.Phase{""},
			map[string]float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := registered(t)
			for _, p := range tc.phases {
				m.observeDecision("shop/web", rollout.Decision{Status: rollout.Status{Phase: p}}, 1)
			}
			got := scrape(t, reg)
			if phases := of(got, "canaryd_rollout_phase", "web"); fmt.Sprint(phases) != fmt.Sprint(tc.want) {
				t.Errorf("phase series %v, want %v", phases, tc.want)
			}
			if _, ok := got[`canaryd_canary_weight_milli{deployment="web",namespace="shop"}`]; !ok {
				t.Errorf("no weight series after a decision")
			}
		})
	}
}

func TestMetricsKeepOnlyTheLastVerdictAndBothSidesOfACheck(t *testing.T) {
	m, reg := registered(t)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Inconclusive}, time.Millisecond)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Fail,
		Canary: analysis.Numbers{Requests: 120, SuccessRate: 95, LatencyP99Ms: 40},
		Stable: analysis.Numbers{Requests: 1000, SuccessRate: 99.9, LatencyP99Ms: 20}}, time.Millisecond)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Fail}, time.Millisecond)
	got := scrape(t, reg)
	for family, want := range map[string]map[string]float64{
		"canaryd_check_last_verdict": {`canaryd_check_last_verdict{deployment="web",namespace="shop",verdict="Fail"}`: 1},
		"canaryd_check_verdicts_total": {
			`canaryd_check_verdicts_total{deployment="web",namespace="shop",verdict="Inconclusive"}`: 1,
			`canaryd_check_verdicts_total{deployment="web",namespace="shop",verdict="Fail"}`:         2,
		},
		"canaryd_check_value": {
			`canaryd_check_value{deployment="web",measure="requests",namespace="shop"}`:     0,
			`canaryd_check_value{deployment="web",measure="success_rate",namespace="shop"}`: 0,
			`canaryd_check_value{deployment="web",measure="p99_ms",namespace="shop"}`:       0,
		},
	} {
		if series := of(got, family, "web"); fmt.Sprint(series) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", family, series, want)
		}
	}

	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Pass,
		Canary: analysis.Numbers{Requests: 120, SuccessRate: 95, LatencyP99Ms: 40},
		Stable: analysis.Numbers{Requests: 1000, SuccessRate: 99.9, LatencyP99Ms: 20}}, time.Millisecond)
	got = scrape(t, reg)
	for series, want := range map[string]float64{
		`canaryd_check_value{deployment="web",measure="success_rate",namespace="shop"}`:        95,
		`canaryd_check_stable_value{deployment="web",measure="success_rate",namespace="shop"}`: 99.9,
		`canaryd_check_value{deployment="web",measure="p99_ms",namespace="shop"}`:              40,
		`canaryd_check_stable_value{deployment="web",measure="requests",namespace="shop"}`:     1000,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if v := of(got, "canaryd_check_last_verdict", "web"); len(v) != 1 {
		t.Errorf("last verdict series %v, want only Pass", v)
	}
}

func TestMetricsHaveNoCheckSeriesBeforeTheFirstCheck(t *testing.T) {
	m, reg := registered(t)
	m.observeDecision("shop/web", rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseIdle}}, 1)
	got := scrape(t, reg)
	for _, family := range []string{"canaryd_check_value", "canaryd_check_stable_value", "canaryd_check_last_verdict",
		"canaryd_check_verdicts_total", "canaryd_rollouts_total"} {
		if series := of(got, family, "web"); len(series) > 0 {
			t.Errorf("%s has series before any check or event: %v", family, series)
		}
	}
	if len(got) == 0 {
		t.Fatal("nothing exposed")
	}
}

func TestMetricsForgetDropsEveryPerDeploymentSeriesOfThatDeploymentOnly(t *testing.T) {
	m, reg := registered(t)
	for _, key := range []string{"shop/web", "shop/api", "other/web"} {
		m.observeCheck(key, analysis.Result{Verdict: analysis.Pass}, time.Millisecond)
		m.observeDecision(key, rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseSucceeded},
			Events: []rollout.Event{{Reason: "Promoted"}}}, 1)
	}
	before := scrape(t, reg)
	m.forget("shop/web")
	after := scrape(t, reg)
	for series := range after {
		if strings.Contains(series, `deployment="web",`) && strings.Contains(series, `namespace="shop"`) {
			t.Errorf("%s is a series of the forgotten Deployment", series)
		}
	}
	// Each of the others keeps 1 phase, weight, step, failures, 3+3 values,
	// 1 last verdict, 1 verdict counter, 1 rollout counter.
	const perDeployment = 1 + 3 + 6 + 1 + 1 + 1
	if gone := len(before) - len(after); gone != perDeployment {
		t.Errorf("forget removed %d series, want %d", gone, perDeployment)
	}
	for _, d := range []struct{ ns, name string }{{"shop", "api"}, {"other", "web"}} {
		n := 0
		for series := range after {
			if strings.Contains(series, `deployment="`+d.name+`"`) && strings.Contains(series, `namespace="`+d.ns+`"`) {
				n++
			}
		}
		if n != perDeployment {
			t.Errorf("%s/%s has %d series, want %d", d.ns, d.name, n, perDeployment)
		}
	}

	// Managed again, the Deployment starts over: its counters from 0.
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Pass}, time.Millisecond)
	if v := scrape(t, reg)[`canaryd_check_verdicts_total{deployment="web",namespace="shop",verdict="Pass"}`]; v != 1 {
		t.Errorf("Pass verdicts after forget and one check = %v, want 1", v)
	}
}

// TestMetricsExposition pins the per-Deployment families as Prometheus reads
// them: names, help, types, labels, the samples of one Deployment. The text
// must parse and pass promlint.
func TestMetricsExposition(t *testing.T) {
	m, reg := registered(t)
	m.observeSync(time.Millisecond, nil)
	m.observeCheck("shop/web", analysis.Result{Verdict: analysis.Pass,
		Canary: analysis.Numbers{Requests: 240, SuccessRate: 99.5, LatencyP99Ms: 41},
		Stable: analysis.Numbers{Requests: 2400, SuccessRate: 99.75, LatencyP99Ms: 38}}, time.Millisecond)
	m.observeDecision("shop/web", rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseProgressing, Step: 2, Weight: 200},
		Events: []rollout.Event{{Reason: "RolloutStarted"}}}, 2)
	m.observeDecision("shop/web", rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseHeld, Step: 2, Weight: 200, Failures: 1}}, 1)
	want := `# HELP canaryd_canary_weight_milli Canary weight canaryd wants, in milli (0..1000).
# TYPE canaryd_canary_weight_milli gauge
canaryd_canary_weight_milli{deployment="web",namespace="shop"} 200
# HELP canaryd_check_last_verdict 1 for the verdict of each Deployment's last check; other verdicts have no series.
# TYPE canaryd_check_last_verdict gauge
canaryd_check_last_verdict{deployment="web",namespace="shop",verdict="Pass"} 1
# HELP canaryd_check_stable_value Last analysis measurement of stable over the same window, for comparison with the canary.
# TYPE canaryd_check_stable_value gauge
canaryd_check_stable_value{deployment="web",measure="p99_ms",namespace="shop"} 38
canaryd_check_stable_value{deployment="web",measure="requests",namespace="shop"} 2400
canaryd_check_stable_value{deployment="web",measure="success_rate",namespace="shop"} 99.75
# HELP canaryd_check_value Last analysis measurement of the canary (requests, success_rate percent, p99_ms).
# TYPE canaryd_check_value gauge
canaryd_check_value{deployment="web",measure="p99_ms",namespace="shop"} 41
canaryd_check_value{deployment="web",measure="requests",namespace="shop"} 240
canaryd_check_value{deployment="web",measure="success_rate",namespace="shop"} 99.5
# HELP canaryd_check_verdicts_total Analysis verdicts by outcome.
# TYPE canaryd_check_verdicts_total counter
canaryd_check_verdicts_total{deployment="web",namespace="shop",verdict="Pass"} 1
# HELP canaryd_rollout_failed_checks Failed checks counted against max-failures in the current rollout.
# TYPE canaryd_rollout_failed_checks gauge
canaryd_rollout_failed_checks{deployment="web",namespace="shop"} 1
# HELP canaryd_rollout_phase 1 for the phase each managed Deployment is in; other phases have no series.
# TYPE canaryd_rollout_phase gauge
canaryd_rollout_phase{deployment="web",namespace="shop",phase="Held"} 1
# HELP canaryd_rollout_step Steps of the current rollout applied so far (0 before the first).
# TYPE canaryd_rollout_step gauge
canaryd_rollout_step{deployment="web",namespace="shop"} 2
# HELP canaryd_rollouts_total Rollout events: started, promoted, rolled_back.
# TYPE canaryd_rollouts_total counter
canaryd_rollouts_total{deployment="web",event="started",namespace="shop"} 1
`
	got := exposition(t, reg, "canaryd_rollout_phase", "canaryd_canary_weight_milli", "canaryd_rollout_step",
		"canaryd_rollout_failed_checks", "canaryd_check_value", "canaryd_check_stable_value", "canaryd_check_last_verdict",
		"canaryd_check_verdicts_total", "canaryd_rollouts_total")
	if got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}

	all := exposition(t, reg, "canaryd_rollout_phase", "canaryd_canary_weight_milli", "canaryd_rollout_step",
		"canaryd_rollout_failed_checks", "canaryd_check_value", "canaryd_check_stable_value", "canaryd_check_last_verdict",
		"canaryd_check_verdicts_total", "canaryd_rollouts_total", "canaryd_reconcile_duration_seconds",
		"canaryd_reconcile_errors_total", "canaryd_check_duration_seconds", "canaryd_api_writes_total",
		"canaryd_workqueue_depth", "canaryd_workqueue_wait_seconds", "canaryd_leader")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(all)); err != nil {
		t.Errorf("the exposition does not parse: %v", err)
	}
	problems, err := promlint.New(bytes.NewReader([]byte(all))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
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
		"canaryd_workqueue_depth", "canaryd_workqueue_wait_seconds", "canaryd_leader"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("family %s is not exposed (have %v)", want, names)
		}
	}
}

// TestMetricsScrapeWhileWorkersUpdate scrapes while workers observe and
// forget; run with -race it checks Collect's locking.
func TestMetricsScrapeWhileWorkersUpdate(t *testing.T) {
	m, reg := registered(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("ns-%d/app-%d", w, i%20)
				m.observeCheck(key, analysis.Result{Verdict: analysis.Pass}, time.Millisecond)
				m.observeDecision(key, rollout.Decision{Status: rollout.Status{Phase: rollout.PhaseProgressing}}, 1)
				if i%7 == 0 {
					m.forget(key)
				}
			}
		}()
	}
	for range 20 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// benchDeployments is the N of the scale benchmark (test/bench/profiling.md).
const benchDeployments = 2000

// fillDeployments gives n Deployments one decision and one check each, the
// state of every managed Deployment during a wave. Keys are made here, as the
// workqueue makes them, so what the metrics keep of them is counted.
func fillDeployments(m *Metrics, n int) {
	for i := range n {
		key := fmt.Sprintf("team-%02d/app-%04d", i%40, i)
		m.observeCheck(key, analysis.Result{Verdict: analysis.Pass,
			Canary: analysis.Numbers{Requests: 240, SuccessRate: 99.5, LatencyP99Ms: 41},
			Stable: analysis.Numbers{Requests: 2400, SuccessRate: 99.7, LatencyP99Ms: 38}}, 30*time.Millisecond)
		m.observeDecision(key, rollout.Decision{
			Status: rollout.Status{Phase: rollout.PhaseProgressing, Step: 2, Weight: 200},
			Events: []rollout.Event{{Reason: "RolloutStarted"}, {Reason: "StepAdvanced"}},
		}, 2)
	}
}

// BenchmarkMetricsHeapPerDeployment reports the live heap the metrics keep
// per managed Deployment: the HeapAlloc difference, after a collection, of a
// Metrics that holds benchDeployments Deployments.
func BenchmarkMetricsHeapPerDeployment(b *testing.B) {
	b.ReportAllocs()
	var perDeployment float64
	for b.Loop() {
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		m := newMetrics()
		fillDeployments(m, benchDeployments)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(m)
		perDeployment = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchDeployments
		b.StartTimer()
	}
	b.ReportMetric(perDeployment, "B/deployment")
}

// BenchmarkMetricsScrape renders /metrics with benchDeployments Deployments,
// as promhttp does for each scrape.
func BenchmarkMetricsScrape(b *testing.B) {
	m := newMetrics()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		b.Fatal(err)
	}
	fillDeployments(m, benchDeployments)
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(io.Discard, mf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestTheQueueReportsHowLongAKeyWaitedForAWorker(t *testing.T) {
	r := newRig(t)
	r.c.queue.Add("shop/foo")
	time.Sleep(20 * time.Millisecond)
	key, _ := r.c.queue.Get()
	r.c.queue.Done(key)
	h := &dto.Metric{}
	if err := r.c.metrics.queueWait.Write(h); err != nil {
		t.Fatal(err)
	}
	if n, sum := h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum(); n != 1 || sum < 0.02 {
		t.Errorf("canaryd_workqueue_wait_seconds: %d samples summing %.3f s, want 1 of at least 0.020", n, sum)
	}
}

func TestStartUpMemoryIsReleasedOnceTheQueueFirstEmptiesOrAtTheLimit(t *testing.T) {
	start := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	type tick struct {
		after  time.Duration
		queued int
	}
	for _, tc := range []struct {
		name      string
		ticks     []tick
		releaseAt int // index of the tick that releases; -1 none
	}{
		{"while keys wait, nothing", []tick{{time.Second, 2000}, {2 * time.Second, 900}}, -1},
		{"the first empty queue", []tick{{time.Second, 2000}, {2 * time.Second, 0}, {3 * time.Second, 0}, {4 * time.Second, 5}, {5 * time.Second, 0}}, 1},
		{"empty at the first tick", []tick{{time.Second, 0}, {2 * time.Second, 0}}, 0},
		{"never empty: at the limit", []tick{{time.Second, 50}, {time.Minute, 50}, {2 * time.Minute, 50}, {3 * time.Minute, 0}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			released := 0
			firstPass := afterFirstPass(start, 2*time.Minute, func() { released++ })
			for i, k := range tc.ticks {
				got := firstPass(start.Add(k.after), k.queued)
				if got != (i == tc.releaseAt) {
					t.Errorf("tick %d (%v, %d queued): released %v", i, k.after, k.queued, got)
				}
			}
			want := 0
			if tc.releaseAt >= 0 {
				want = 1
			}
			if released != want {
				t.Errorf("release called %d times, want %d", released, want)
			}
		})
	}
}
