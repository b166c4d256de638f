package kube

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// Metrics are canaryd's own Prometheus collectors.
type Metrics struct {
	phase         *prometheus.GaugeVec
	weight        *prometheus.GaugeVec
	checkValue    *prometheus.GaugeVec
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

func newMetrics() *Metrics {
	return &Metrics{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_rollout_phase",
			Help: "1 for the phase each managed Deployment is in."}, []string{"namespace", "deployment", "phase"}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_canary_weight_milli",
			Help: "Canary weight canaryd wants, in milli (0..1000)."}, []string{"namespace", "deployment"}),
		checkValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_check_value",
			Help: "Last analysis measurement of the canary (requests, success_rate percent, p99_ms)."}, []string{"namespace", "deployment", "measure"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_check_verdicts_total",
			Help: "Analysis verdicts by outcome."}, []string{"verdict"}),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_rollouts_total",
			Help: "Rollout events: started, promoted, rolled_back."}, []string{"event"}),
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
	for _, c := range []prometheus.Collector{m.phase, m.weight, m.checkValue, m.verdicts, m.rollouts, m.reconcile,
		m.reconcileErrs, m.checkLatency, m.writes, m.queueDepth, m.Leader} {
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
	m.verdicts.WithLabelValues(string(r.Verdict)).Inc()
	m.checkValue.WithLabelValues(ns, name, "requests").Set(r.Canary.Requests)
	m.checkValue.WithLabelValues(ns, name, "success_rate").Set(r.Canary.SuccessRate)
	m.checkValue.WithLabelValues(ns, name, "p99_ms").Set(r.Canary.LatencyP99Ms)
}

func (m *Metrics) observeDecision(key string, dec rollout.Decision, writes int) {
	ns, name, _ := strings.Cut(key, "/")
	m.writes.Add(float64(writes))
	for _, p := range phases {
		v := 0.0
		if dec.Status.Phase == p {
			v = 1
		}
		m.phase.WithLabelValues(ns, name, string(p)).Set(v)
	}
	m.weight.WithLabelValues(ns, name).Set(float64(dec.Status.Weight))
	for _, e := range dec.Events {
		switch e.Reason {
		case "RolloutStarted":
			m.rollouts.WithLabelValues("started").Inc()
		case "Promoted":
			m.rollouts.WithLabelValues("promoted").Inc()
		case "RolledBack":
			m.rollouts.WithLabelValues("rolled_back").Inc()
		}
	}
}

func (m *Metrics) forget(key string) {
	ns, name, _ := strings.Cut(key, "/")
	for _, p := range phases {
		m.phase.DeleteLabelValues(ns, name, string(p))
	}
	m.weight.DeleteLabelValues(ns, name)
	for _, k := range []string{"requests", "success_rate", "p99_ms"} {
		m.checkValue.DeleteLabelValues(ns, name, k)
	}
}
