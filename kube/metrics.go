package kube

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// Metrics are canaryd's own Prometheus collectors. Per-Deployment series
// carry namespace and deployment labels and are dropped when canaryd stops
// managing the Deployment, so a cluster's series count follows the managed
// set. Only the leader fills them: a standby exposes canaryd_leader 0 and no
// per-Deployment series, which keeps sum() over all replicas correct in
// dashboards.
type Metrics struct {
	apps          *appCollector
	reconcile     prometheus.Histogram
	reconcileErrs prometheus.Counter
	checkLatency  prometheus.Histogram
	writes        prometheus.Counter
	queueDepth    prometheus.Gauge
	queueWait     prometheus.Histogram
	Leader        prometheus.Gauge
}

var verdictValues = [...]analysis.Verdict{analysis.Pass, analysis.Fail, analysis.Inconclusive, analysis.Error}

// measures are the check_value label values, in the order Numbers holds them.
var measures = [...]string{"requests", "success_rate", "p99_ms"}

// rolloutEvents are the Events that mark a rollout's life, with the event
// label of canaryd_rollouts_total each is counted under.
var rolloutEvents = [...]struct{ reason, label string }{
	{"RolloutStarted", "started"}, {"Promoted", "promoted"}, {"RolledBack", "rolled_back"},
}

func newMetrics() *Metrics {
	return &Metrics{
		apps: newAppCollector(),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_reconcile_duration_seconds",
			Help: "Time to reconcile one Deployment.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		reconcileErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_reconcile_errors_total",
			Help: "Reconciles that failed and were retried."}),
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_check_duration_seconds",
			Help: "Time one analysis check took (all its Prometheus queries).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_api_writes_total",
			Help: "Writes canaryd made to the API server."}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_workqueue_depth", Help: "Keys waiting in the workqueue."}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_workqueue_wait_seconds",
			Help: "Time a key waited in the workqueue for a worker (from its due time, for a requeue at one).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_leader", Help: "1 while this process holds the leader lease."}),
	}
}

// Register adds every collector to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.apps, m.reconcile, m.reconcileErrs, m.checkLatency, m.writes, m.queueDepth, m.queueWait, m.Leader} {
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
	m.checkLatency.Observe(d.Seconds())
	m.apps.update(key, func(a *appState) {
		a.checked = true
		a.lastVerdict = r.Verdict
		for i, v := range verdictValues {
			if r.Verdict == v {
				a.verdicts[i]++
			}
		}
		a.canary = [len(measures)]float64{r.Canary.Requests, r.Canary.SuccessRate, r.Canary.LatencyP99Ms}
		a.stable = [len(measures)]float64{r.Stable.Requests, r.Stable.SuccessRate, r.Stable.LatencyP99Ms}
	})
}

// observeDecision records the state a decision leads to. Rollout events are
// counted only when the decision wrote something: each of them comes with a
// new status, the first write of a decision, and a decision whose writes
// failed (a conflict, a stale cache) is made again and would count twice.
func (m *Metrics) observeDecision(key string, dec rollout.Decision, writes int) {
	m.writes.Add(float64(writes))
	m.apps.update(key, func(a *appState) {
		a.decided = true
		a.phase = dec.Status.Phase
		a.weight, a.step, a.failures = int32(dec.Status.Weight), int32(dec.Status.Step), int32(dec.Status.Failures)
		if writes == 0 {
			return
		}
		for _, e := range dec.Events {
			for i, ev := range rolloutEvents {
				if e.Reason == ev.reason {
					a.rollouts[i]++
				}
			}
		}
	})
}

// forget drops every series of a Deployment canaryd no longer manages.
func (m *Metrics) forget(key string) {
	m.apps.forget(key)
}

// appState is what the metrics keep of one Deployment: 152 B, about 230 B
// with its key and its map entry. The GaugeVec and CounterVec children it
// replaces held 24 series per Deployment at about 540 B each: 12.9 kB, 26 MB
// at N = 2,000 (BenchmarkMetricsHeapPerDeployment).
type appState struct {
	// phase is "" while the Deployment waits to be adopted: it then has no
	// canaryd_rollout_phase series.
	phase rollout.Phase
	// lastVerdict is exposed as it is; verdicts counts only the four there
	// are.
	lastVerdict            analysis.Verdict
	weight, step, failures int32
	decided                bool // the series of a decision exist
	checked                bool // the series of a check exist
	canary, stable         [len(measures)]float64
	verdicts               [len(verdictValues)]uint64 // by index in verdictValues
	rollouts               [len(rolloutEvents)]uint64 // by index in rolloutEvents
}

// appCollector keeps one appState per managed Deployment and turns them into
// constant metrics when Prometheus scrapes: nothing per series lives between
// scrapes.
type appCollector struct {
	phase, weight, step, failures, checkValue, stableValue, lastVerdict, verdicts, rollouts *prometheus.Desc

	mu   sync.Mutex
	apps map[string]*appState // by "namespace/name"
}

func newAppCollector() *appCollector {
	desc := func(name, help string, label ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"namespace", "deployment"}, label...), nil)
	}
	return &appCollector{
		phase: desc("canaryd_rollout_phase",
			"1 for the phase each managed Deployment is in; other phases have no series.", "phase"),
		weight: desc("canaryd_canary_weight_milli",
			"Canary weight canaryd wants, in milli (0..1000)."),
		step: desc("canaryd_rollout_step",
			"Steps of the current rollout applied so far (0 before the first)."),
		failures: desc("canaryd_rollout_failed_checks",
			"Failed checks counted against max-failures in the current rollout."),
		checkValue: desc("canaryd_check_value",
			"Last analysis measurement of the canary (requests, success_rate percent, p99_ms).", "measure"),
		stableValue: desc("canaryd_check_stable_value",
			"Last analysis measurement of stable over the same window, for comparison with the canary.", "measure"),
		lastVerdict: desc("canaryd_check_last_verdict",
			"1 for the verdict of each Deployment's last check; other verdicts have no series.", "verdict"),
		verdicts: desc("canaryd_check_verdicts_total",
			"Analysis verdicts by outcome.", "verdict"),
		rollouts: desc("canaryd_rollouts_total",
			"Rollout events: started, promoted, rolled_back.", "event"),
		apps: map[string]*appState{},
	}
}

func (c *appCollector) update(key string, f func(*appState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.apps[key]
	if a == nil {
		a = &appState{}
		c.apps[key] = a
	}
	f(a)
}

func (c *appCollector) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.apps, key)
}

// Describe sends every Desc, so the registry checks the names and labels
// against the other collectors.
func (c *appCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.phase, c.weight, c.step, c.failures, c.checkValue, c.stableValue,
		c.lastVerdict, c.verdicts, c.rollouts} {
		ch <- d
	}
}

// Collect copies the states under the lock and builds the metrics outside
// it: a scrape of 2,000 Deployments (26,000 series) takes about 45 ms on two
// shared cores (BenchmarkMetricsScrape), which workers must not wait for. The
// copy is 168 B a Deployment, small beside the metrics built from it (about
// 700 B a series, garbage once the scrape is written).
func (c *appCollector) Collect(ch chan<- prometheus.Metric) {
	type keyed struct {
		key string
		appState
	}
	c.mu.Lock()
	apps := make([]keyed, 0, len(c.apps))
	for key, a := range c.apps {
		apps = append(apps, keyed{key, *a})
	}
	c.mu.Unlock()
	for i := range apps {
		ns, name, _ := strings.Cut(apps[i].key, "/")
		c.collect(ch, ns, name, &apps[i].appState)
	}
}

// collect sends one Deployment's series. Label values are Kubernetes names,
// valid UTF-8, so MustNewConstMetric does not panic.
func (c *appCollector) collect(ch chan<- prometheus.Metric, ns, name string, a *appState) {
	gauge := prometheus.GaugeValue
	if a.decided {
		if a.phase != "" {
			ch <- prometheus.MustNewConstMetric(c.phase, gauge, 1, ns, name, string(a.phase))
		}
		ch <- prometheus.MustNewConstMetric(c.weight, gauge, float64(a.weight), ns, name)
		ch <- prometheus.MustNewConstMetric(c.step, gauge, float64(a.step), ns, name)
		ch <- prometheus.MustNewConstMetric(c.failures, gauge, float64(a.failures), ns, name)
		for i, n := range a.rollouts {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(c.rollouts, prometheus.CounterValue, float64(n), ns, name, rolloutEvents[i].label)
			}
		}
	}
	if a.checked {
		ch <- prometheus.MustNewConstMetric(c.lastVerdict, gauge, 1, ns, name, string(a.lastVerdict))
		for i, k := range measures {
			ch <- prometheus.MustNewConstMetric(c.checkValue, gauge, a.canary[i], ns, name, k)
			ch <- prometheus.MustNewConstMetric(c.stableValue, gauge, a.stable[i], ns, name, k)
		}
		for i, n := range a.verdicts {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(c.verdicts, prometheus.CounterValue, float64(n), ns, name, string(verdictValues[i]))
			}
		}
	}
}

// queueMetrics hands the workqueue the one measure canaryd exports from it
// beyond the depth: how long a key waits between being added (for a
// requeue at a due time, when that time comes) and a worker taking it. Of a
// step's lag, that is the share spent waiting for a worker rather than on
// the check and the writes.
type queueMetrics struct{ wait prometheus.Histogram }

func (q queueMetrics) NewLatencyMetric(string) workqueue.HistogramMetric { return q.wait }

func (queueMetrics) NewDepthMetric(string) workqueue.GaugeMetric            { return noMetric{} }
func (queueMetrics) NewAddsMetric(string) workqueue.CounterMetric           { return noMetric{} }
func (queueMetrics) NewWorkDurationMetric(string) workqueue.HistogramMetric { return noMetric{} }
func (queueMetrics) NewRetriesMetric(string) workqueue.CounterMetric        { return noMetric{} }
func (queueMetrics) NewUnfinishedWorkSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noMetric{}
}
func (queueMetrics) NewLongestRunningProcessorSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noMetric{}
}

// noMetric is a workqueue measure canaryd does not export.
type noMetric struct{}

func (noMetric) Inc()            {}
func (noMetric) Dec()            {}
func (noMetric) Set(float64)     {}
func (noMetric) Observe(float64) {}
