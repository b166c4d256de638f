package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
)

// WaveResult is one wave: every rolling Deployment bumped at once, walked
// through its steps and promoted.
type WaveResult struct {
	Rolling, Converged, Failed int
	// Stagger: the images were bumped one after another over this time
	// (0: all at once).
	Stagger          time.Duration
	FailReasons      []string      // why each failed rollout failed
	Duration         time.Duration // bump to the last one Succeeded
	CPUPct, RSSMaxMB float64       // canaryd, over the wave
	Lags             []float64     // seconds, one per timed step
	LagP50, LagP99   float64
	// Overruns: for the same steps, how much longer than the interval the
	// previous weight stayed in place (its watch event to the new one's):
	// what traffic sees, including any wait to stamp a step applied.
	Overruns               []float64
	OverrunP50, OverrunP99 float64
	QueueWaitMeanS         float64 // canaryd_workqueue_wait_seconds, mean
	Held                   int     // steps that held (inconclusive) before advancing: not timed
	Steps                  int     // weight changes written
	// OddSequences are rollouts whose weights were not exactly 100m, 200m,
	// 500m, 1000m, 0 (a promoted rollout must write each once, in order).
	OddSequences []string
	// StatusUpdates are the distinct status annotations seen: one per patch
	// of the Deployment's status.
	StatusUpdates int
	// AdvanceWrites are the writes of each plain step advance (step 1 → 2,
	// 2 → 3): the status updates seen since the last weight change plus the
	// split's; observed on the objects, so retries do not count.
	AdvanceWrites []float64
	Conflicts     float64 // writes the API server refused with 409
	// WriteLatency is the mean time of canaryd's writes to the API server.
	WriteLatency float64
	// API requests over the wave by verb ("get", "list", "patch", ...) and
	// writes by resource, from canaryd's client-go metrics.
	Verbs                         map[string]float64
	WritesByResource              map[string]float64
	Writes, WritesNoEvents        float64
	Reads, Watches                float64
	WritesPerStep, ReadsPerStep   float64
	ControllerWrites              float64 // canaryd_api_writes_total: the writes canaryd meant to make
	Checks, Queries               float64
	QueriesPerCheck               float64
	QueueMax, QueueMedian         float64
	Components                    map[string]float64 // CPU % of one core, by process
	MachineBusy                   float64            // % of all cores
	RateLimitWaitMean, CheckMeanS float64
	// Events: canaryd's Events about the rolling Deployments that were in
	// the API by the end of the wave (3 s after the last one converged),
	// per rollout, and how long after canaryd raised it each was written
	// (creation minus first timestamp; both have a resolution of a second).
	EventsPerRollout             float64
	EventDelayP50, EventDelayP99 float64
	profile                      []string
}

var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}

// wave bumps every rolling Deployment's image, all at once (stagger 0) or
// one after another evenly over stagger, and follows them to the end.
func (s *scaleRun) wave(ctx context.Context, n, w int, keys []string, stagger time.Duration) (WaveResult, error) {
	wr := WaveResult{Rolling: len(keys), Stagger: stagger}
	d := s.daemon
	pids := map[string]string{"canaryd": strconv.Itoa(d.Pid()), "bench (meshsim, watches)": "self"}
	for name, pid := range s.env.Cluster.Pids() {
		pids[name] = strconv.Itoa(pid)
	}
	prom0, err := Scrape(ctx, s.env.Cluster.Prometheus.URL+"/metrics")
	if err != nil {
		return wr, err
	}
	m0, err := d.Metrics(ctx)
	if err != nil {
		return wr, err
	}
	meter := StartCPUMeter(pids)
	bump := time.Now()

	// Sample canaryd's memory and queue while the wave runs.
	stop := make(chan struct{})
	var mu sync.Mutex
	var rss, queue []float64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pid := strconv.Itoa(d.Pid())
		for {
			if v, err := rssBytes(pid); err == nil {
				mu.Lock()
				rss = append(rss, v/1e6)
				mu.Unlock()
			}
			if m, err := d.Metrics(ctx); err == nil {
				mu.Lock()
				queue = append(queue, m.Get("canaryd_workqueue_depth"))
				mu.Unlock()
			}
			// Every 5 s, as a quick Prometheus would scrape: a scrape of
			// canaryd's thousands of series costs it CPU and garbage itself.
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	var profDone chan error
	if s.cfg.Profile && w == 1 {
		p := filepath.Join(s.cfg.ProfileDir, fmt.Sprintf("cpu-rolling-N%d.pprof", n))
		wr.profile = append(wr.profile, p)
		profDone = make(chan error, 1)
		go func() { profDone <- d.Profile(ctx, "profile?seconds=20", p) }()
	}

	s.waves++
	image := fmt.Sprintf(":wave-%d", s.waves)
	byKey := map[string]App{}
	for _, a := range s.apps {
		byKey[a.Key()] = a
	}
	var rolling []App
	for _, k := range keys {
		rolling = append(rolling, byKey[k])
	}
	deploy := func(a App) error {
		return a.Deploy(ctx, s.env.Client, "example.com/"+a.Name+image, map[string]string{"bench/wave": strconv.Itoa(s.waves)})
	}
	if stagger > 0 {
		err = nil
		for i, a := range rolling {
			if d := time.Until(bump.Add(stagger * time.Duration(i) / time.Duration(len(rolling)))); d > 0 {
				time.Sleep(d)
			}
			if err = deploy(a); err != nil {
				break
			}
		}
	} else {
		err = parallel(rolling, 16, deploy)
	}
	if err != nil {
		close(stop)
		wg.Wait()
		return wr, err
	}
	done := func(st rollout.Status) bool {
		return st.StartedAt != nil && !st.StartedAt.Before(bump) &&
			(st.Phase == rollout.PhaseSucceeded || st.Phase == rollout.PhaseFailed)
	}
	deadline := bump.Add(s.cfg.WaveTimeout)
	for time.Now().Before(deadline) {
		if s.rec.Count(keys, done) == len(keys) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	wr.Duration = time.Since(bump)
	for _, k := range keys {
		switch st := s.rec.Status(k); {
		case done(st) && st.Phase == rollout.PhaseSucceeded:
			wr.Converged++
		case done(st):
			wr.Failed++
			why := st.Message
			if st.LastCheck != nil {
				why = st.LastCheck.Reason
			}
			wr.FailReasons = append(wr.FailReasons, k+": "+why)
		}
	}
	// Let the last writes (canary scaled to 0, re-pause) land before the
	// counters are read.
	time.Sleep(3 * time.Second)
	comps, busy := meter.Read()
	wr.Components, wr.MachineBusy = comps, busy
	wr.CPUPct = comps["canaryd"]
	close(stop)
	wg.Wait()
	if profDone != nil {
		if err := <-profDone; err != nil {
			return wr, err
		}
	}
	m1, err := d.Metrics(ctx)
	if err != nil {
		return wr, err
	}
	prom1, err := Scrape(ctx, s.env.Cluster.Prometheus.URL+"/metrics")
	if err != nil {
		return wr, err
	}
	wr.RSSMaxMB = maxOf(rss)
	wr.QueueMax, wr.QueueMedian = maxOf(queue), Median(queue)
	s.lags(&wr, keys, bump)
	if err := s.events(ctx, &wr, keys, bump); err != nil {
		return wr, err
	}
	s.apiCounts(&wr, m0, m1)
	wr.Checks = m1.Sum("canaryd_check_verdicts_total") - m0.Sum("canaryd_check_verdicts_total")
	wr.Queries = promQueries(prom1) - promQueries(prom0)
	if wr.Checks > 0 {
		wr.QueriesPerCheck = wr.Queries / wr.Checks
	}
	if c := m1.Get("canaryd_workqueue_wait_seconds") - m0.Get("canaryd_workqueue_wait_seconds"); c > 0 {
		wr.QueueWaitMeanS = (m1.SumOf("canaryd_workqueue_wait_seconds") - m0.SumOf("canaryd_workqueue_wait_seconds")) / c
	}
	if c := m1.Get("canaryd_check_duration_seconds") - m0.Get("canaryd_check_duration_seconds"); c > 0 {
		wr.CheckMeanS = (m1.SumOf("canaryd_check_duration_seconds") - m0.SumOf("canaryd_check_duration_seconds")) / c
	}
	return wr, nil
}

// events reads canaryd's Events about the rolling Deployments raised since
// the wave's start.
func (s *scaleRun) events(ctx context.Context, wr *WaveResult, keys []string, since time.Time) error {
	rolling := map[string]bool{}
	namespaces := map[string]bool{}
	for _, k := range keys {
		rolling[k] = true
		namespaces[strings.SplitN(k, "/", 2)[0]] = true
	}
	var delays []float64
	n := 0
	for ns := range namespaces {
		list, err := s.env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list Events in %s: %w", ns, err)
		}
		for _, ev := range list.Items {
			o := ev.InvolvedObject
			if ev.Source.Component != "canaryd" || o.Kind != "Deployment" || !rolling[o.Namespace+"/"+o.Name] ||
				ev.FirstTimestamp.Time.Before(since.Truncate(time.Second)) {
				continue
			}
			n += int(max(ev.Count, 1))
			if ev.Count <= 1 { // an aggregated Event's creation says nothing of its later occurrences
				delays = append(delays, ev.CreationTimestamp.Sub(ev.FirstTimestamp.Time).Seconds())
			}
		}
	}
	if len(keys) > 0 {
		wr.EventsPerRollout = float64(n) / float64(len(keys))
	}
	if len(delays) > 0 {
		wr.EventDelayP50, wr.EventDelayP99 = Quantile(delays, 0.5), Quantile(delays, 0.99)
	}
	return nil
}

// promQueries counts Prometheus's instant and range query requests.
func promQueries(m Samples) float64 {
	n := 0.0
	for _, x := range m["prometheus_http_requests_total"] {
		if strings.HasPrefix(x.Labels["handler"], "/api/v1/query") {
			n += x.Value
		}
	}
	return n
}

// apiCounts fills the API request figures from two scrapes of canaryd.
func (s *scaleRun) apiCounts(wr *WaveResult, m0, m1 Samples) {
	wr.Verbs, wr.WritesByResource = map[string]float64{}, map[string]float64{}
	const lat = "canaryd_api_request_duration_seconds"
	before, beforeSum := map[[2]string]float64{}, map[[2]string]float64{}
	for _, x := range m0[lat] {
		before[[2]string{x.Labels["verb"], x.Labels["resource"]}] += x.Value
		beforeSum[[2]string{x.Labels["verb"], x.Labels["resource"]}] += x.Sum
	}
	var writeTime float64
	for _, x := range m1[lat] {
		verb, res := x.Labels["verb"], x.Labels["resource"]
		dv := x.Value - before[[2]string{verb, res}]
		if writeVerbs[verb] && res != "events" {
			writeTime += x.Sum - beforeSum[[2]string{verb, res}]
		}
		wr.Verbs[verb] += dv
		if writeVerbs[verb] {
			wr.Writes += dv
			wr.WritesByResource[res] += dv
			if res != "events" {
				wr.WritesNoEvents += dv
			}
		} else {
			wr.Reads += dv
		}
	}
	if wr.WritesNoEvents > 0 {
		wr.WriteLatency = writeTime / wr.WritesNoEvents
	}
	// Watches are the GETs client-go counted that the latency metric did not.
	gets := m1.Sum("canaryd_api_requests_total", "method", "GET") - m0.Sum("canaryd_api_requests_total", "method", "GET")
	wr.Watches = gets - wr.Reads
	wr.ControllerWrites = m1.Sum("canaryd_api_writes_total") - m0.Sum("canaryd_api_writes_total")
	wr.Conflicts = m1.Sum("canaryd_api_requests_total", "code", "409") - m0.Sum("canaryd_api_requests_total", "code", "409")
	if wr.Steps > 0 {
		wr.WritesPerStep = wr.WritesNoEvents / float64(wr.Steps)
		wr.ReadsPerStep = wr.Reads / float64(wr.Steps)
	}
	th := "canaryd_api_rate_limiter_wait_seconds"
	if c := m1.Sum(th) - m0.Sum(th); c > 0 {
		wr.RateLimitWaitMean = (m1.SumOf(th) - m0.SumOf(th)) / c
	}
}

// lags times every step that was due by the clock: the weight of step k+1
// (or of the promotion) written after step k's stepStartedAt + interval.
// Step 1 waits for canary pods, not for a clock, so it is not timed; a step
// whose check held (too few requests) is counted in Held, not timed.
func (s *scaleRun) lags(wr *WaveResult, keys []string, since time.Time) {
	for _, k := range keys {
		ws := s.rec.Weights(k)
		sts := s.rec.Statuses(k)
		for _, st := range sts {
			if !st.At.Before(since) {
				wr.StatusUpdates++
			}
		}
		prev := -2
		var prevAt time.Time
		var seq []int
		for _, c := range ws {
			if c.At.Before(since) {
				prev, prevAt = c.Weight, c.At
				continue
			}
			wr.Steps++
			seq = append(seq, c.Weight)
			if prev > 0 && c.Weight > prev && c.Weight < 1000 {
				n := 1.0 // the split
				for _, st := range sts {
					if st.At.After(prevAt) && !st.At.After(c.At) {
						n++
					}
				}
				wr.AdvanceWrites = append(wr.AdvanceWrites, n)
			}
			if prev > 0 && c.Weight > prev {
				due, held, ok := stepDue(sts, prev, c.At, since)
				switch {
				case held:
					wr.Held++
				case ok:
					wr.Lags = append(wr.Lags, c.At.Sub(due.Add(s.cfg.Interval)).Seconds())
					wr.Overruns = append(wr.Overruns, c.At.Sub(prevAt.Add(s.cfg.Interval)).Seconds())
				}
			}
			prev, prevAt = c.Weight, c.At
		}
		if s.rec.Status(k).Phase == rollout.PhaseSucceeded && fmt.Sprint(seq) != "[100 200 500 1000 0]" {
			wr.OddSequences = append(wr.OddSequences, fmt.Sprintf("%s: %v", k, seq))
		}
	}
	wr.LagP50, wr.LagP99 = Quantile(wr.Lags, 0.5), Quantile(wr.Lags, 0.99)
	wr.OverrunP50, wr.OverrunP99 = Quantile(wr.Overruns, 0.5), Quantile(wr.Overruns, 0.99)
}

// stepDue finds when the step at weight w started: the last status seen
// before at with that weight, in this rollout. held says the step held.
func stepDue(sts []StatusSeen, w int, at, since time.Time) (start time.Time, held, ok bool) {
	for _, s := range sts {
		if s.At.After(at) {
			break
		}
		st := s.Status
		if st.StartedAt == nil || st.StartedAt.Before(since) || st.Weight != w || st.StepStartedAt == nil {
			continue
		}
		start, ok = *st.StepStartedAt, true
		if st.Phase == rollout.PhaseHeld || st.Failures > 0 {
			held = true
		}
	}
	return start, held, ok
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		if x > m {
			m = x
		}
	}
	return m
}
