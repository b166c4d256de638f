package kube

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// Metrics are canaryd's own Prometheus collectors. Per-Deployment series
// carry namespace and deployment labels and are dropped when canaryd stops
// managing the Deployment, so a cluster's series count follows the managed
// set. Only the leader fills them: a standby exposes canaryd_leader 0 and
// empty vectors, which keeps sum() over all replicas correct in dashboards.
type Metrics struct {
	phase         *prometheus.GaugeVec
	weight        *prometheus.GaugeVec
	step          *prometheus.GaugeVec
	failures      *prometheus.GaugeVec
	checkValue    *prometheus.GaugeVec
	stableValue   *prometheus.GaugeVec
	lastVerdict   *prometheus.GaugeVec
	verdicts      *prometheus.CounterVec
	rollouts      *prometheus.CounterVec
	reconcile     prometheus.Histogram
	reconcileErrs prometheus.Counter
	checkLatency  prometheus.Histogram
	writes        prometheus.Counter
	queueDepth    prometheus.Gauge
	Leader        prometheus.Gauge
}

var phases = []rollout.Phase{rollout.PhaseIdle, rollout.PhaseWaiting, rollout.PhaseProgressing, rollout.PhaseHeld,
	rollout.PhaseWaitingPromotion, rollout.PhasePromoting, rollout.PhaseSucceeded, rollout.PhaseRollingBack, rollout.PhaseFailed}

var verdictValues = []analysis.Verdict{analysis.Pass, analysis.Fail, analysis.Inconclusive, analysis.Error}

// measures are the check_value label values, in the order Numbers holds them.
var measures = []string{"requests", "success_rate", "p99_ms"}

// rolloutEvents maps the Events that mark a rollout's life to the event
// label of canaryd_rollouts_total.
var rolloutEvents = map[string]string{"RolloutStarted": "started", "Promoted": "promoted", "RolledBack": "rolled_back"}

func newMetrics() *Metrics {
	perApp := []string{"namespace", "deployment"}
	return &Metrics{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_rollout_phase",
			Help: "1 for the phase each managed Deployment is in, 0 for the others."}, append(perApp, "phase")),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_canary_weight_milli",
			Help: "Canary weight canaryd wants, in milli (0..1000)."}, perApp),
		step: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_rollout_step",
			Help: "Steps of the current rollout applied so far (0 before the first)."}, perApp),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_rollout_failed_checks",
			Help: "Failed checks counted against max-failures in the current rollout."}, perApp),
		checkValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_check_value",
			Help: "Last analysis measurement of the canary (requests, success_rate percent, p99_ms)."}, append(perApp, "measure")),
		stableValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_check_stable_value",
			Help: "Last analysis measurement of stable over the same window, for comparison with the canary."}, append(perApp, "measure")),
		lastVerdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_check_last_verdict",
			Help: "1 for the verdict of each Deployment's last check, 0 for the others."}, append(perApp, "verdict")),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_check_verdicts_total",
			Help: "Analysis verdicts by outcome."}, append(perApp, "verdict")),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_rollouts_total",
			Help: "Rollout events: started, promoted, rolled_back."}, append(perApp, "event")),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_reconcile_duration_seconds",
			Help: "Time to reconcile one Deployment.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		reconcileErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_reconcile_errors_total",
			Help: "Reconciles that failed and were retried."}),
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_check_duration_seconds",
			Help: "Time one analysis check took (all its Prometheus queries).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_api_writes_total",
			Help: "Writes canaryd made to the API server."}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_workqueue_depth", Help: "Keys waiting in the workqueue."}),
		Leader:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_leader", Help: "1 while this process holds the leader lease."}),
	}
}

// Register adds every collector to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.phase, m.weight, m.step, m.failures, m.checkValue, m.stableValue,
		m.lastVerdict, m.verdicts, m.rollouts, m.reconcile, m.reconcileErrs, m.checkLatency, m.writes, m.queueDepth, m.Leader} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) observeSync(d time.Duration, err error) {
	m.reconcile.Observe(d.Seconds())
	if err != nil {
		m.reconcileErrs.Inc()
	}
}

func (m *Metrics) observeCheck(key string, r analysis.Result, d time.Duration) {
	ns, name, _ := strings.Cut(key, "/")
	m.checkLatency.Observe(d.Seconds())
	m.verdicts.WithLabelValues(ns, name, string(r.Verdict)).Inc()
	for _, v := range verdictValues {
		m.lastVerdict.WithLabelValues(ns, name, string(v)).Set(boolValue(r.Verdict == v))
	}
	canary := []float64{r.Canary.Requests, r.Canary.SuccessRate, r.Canary.LatencyP99Ms}
	stable := []float64{r.Stable.Requests, r.Stable.SuccessRate, r.Stable.LatencyP99Ms}
	for i, k := range measures {
		m.checkValue.WithLabelValues(ns, name, k).Set(canary[i])
		m.stableValue.WithLabelValues(ns, name, k).Set(stable[i])
	}
}

// observeDecision records the state a decision leads to. Rollout events are
// counted only when the decision wrote something: each of them comes with a
// new status, the first write of a decision, and a decision whose writes
// failed (a conflict, a stale cache) is made again and would count twice.
func (m *Metrics) observeDecision(key string, dec rollout.Decision, writes int) {
	ns, name, _ := strings.Cut(key, "/")
	m.writes.Add(float64(writes))
	for _, p := range phases {
		m.phase.WithLabelValues(ns, name, string(p)).Set(boolValue(dec.Status.Phase == p))
	}
	m.weight.WithLabelValues(ns, name).Set(float64(dec.Status.Weight))
	m.step.WithLabelValues(ns, name).Set(float64(dec.Status.Step))
	m.failures.WithLabelValues(ns, name).Set(float64(dec.Status.Failures))
	if writes == 0 {
		return
	}
	for _, e := range dec.Events {
		if event, ok := rolloutEvents[e.Reason]; ok {
			m.rollouts.WithLabelValues(ns, name, event).Inc()
		}
	}
}

// forget drops every series of a Deployment canaryd no longer manages.
func (m *Metrics) forget(key string) {
	ns, name, _ := strings.Cut(key, "/")
	app := prometheus.Labels{"namespace": ns, "deployment": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.phase, m.weight, m.step, m.failures, m.checkValue, m.stableValue, m.lastVerdict, m.verdicts, m.rollouts,
	} {
		v.DeletePartialMatch(app)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
