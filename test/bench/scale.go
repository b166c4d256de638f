package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// ScaleConfig is the scale benchmark: one canaryd process managing N
// Deployments of one replica each, a tenth of them rolling at once.
type ScaleConfig struct {
	Ns []int // Deployment counts, rising: each run adds Deployments to the last
	// PushStep and PushMax: after Ns, keep adding PushStep Deployments while
	// every target holds, up to PushMax (0: no push).
	PushStep, PushMax int
	Waves             int // rolling waves per N; figures are their medians
	// StaggeredWaves run after Waves at every N: the same rollouts, their
	// images bumped one after another, evenly over one Interval, instead of
	// all in the same second. As many roll at once; their steps fall due
	// spread over the interval, as independent teams' releases do.
	StaggeredWaves int
	Interval       time.Duration // canaryd.io/interval of every Deployment
	RPS            float64       // apex traffic of each rolling Deployment
	IdleWindow     time.Duration // how long idle CPU is measured
	WaveTimeout    time.Duration
	Profile        bool   // capture pprof CPU and heap profiles at every N
	ProfileDir     string // where profiles go
	Workers        int    // canaryd --workers (0: canaryd's default)
	// Alt, when set, measures every N again with canaryd restarted with
	// other settings (idle memory and CPU, then the waves): the effect of
	// those knobs on the same cluster, in the same run.
	Alt      *AltConfig
	Deadline time.Time
	Logf     func(format string, args ...any) `json:"-"`
}

// Targets are issue 8's targets at N = 2,000.
var Targets = struct {
	RSSMB, IdleCPUPct, LagP99, WritesPerStep float64
}{RSSMB: 150, IdleCPUPct: 2, LagP99: 1, WritesPerStep: 3}

// ScaleResult is one N.
type ScaleResult struct {
	N, Rolling int
	Adopt      time.Duration // from the first new Deployment to every one adopted
	Waves      []WaveResult
	Idle       Idle         // after a fresh start with N managed
	Alt        Idle         // with ScaleConfig.Alt
	AltWaves   []WaveResult // with ScaleConfig.Alt
	Staggered  []WaveResult // ScaleConfig.StaggeredWaves, canaryd's defaults
	Profiles   []string
	Broken     []string // targets broken
}

// Median of a per-wave figure.
func (r ScaleResult) Median(f func(WaveResult) float64) float64 {
	var xs []float64
	for _, w := range r.Waves {
		xs = append(xs, f(w))
	}
	return Median(xs)
}

// AltConfig are the settings of the second measurement of every N.
type AltConfig struct {
	Workers int      // --workers
	Env     []string // e.g. GOMEMLIMIT=100MiB
	Flags   []string // more of canaryd's flags, e.g. --kube-api-qps=200
}

func (a AltConfig) String() string {
	var parts []string
	if a.Workers > 0 {
		parts = append(parts, fmt.Sprintf("--workers %d", a.Workers))
	}
	parts = append(parts, a.Flags...)
	return strings.Join(append(parts, a.Env...), ", ")
}

type scaleRun struct {
	env    *Env
	cfg    ScaleConfig
	rec    *Recorder
	apps   []App
	daemon *Daemon
	waves  int // waves run so far, over every N: each wave's image is new
}

// RunScale runs the scale benchmark and returns one result per N reached.
func RunScale(ctx context.Context, env *Env, cfg ScaleConfig) ([]ScaleResult, error) {
	rec, err := StartRecorder(ctx, env.Client, env.Dyn, nil)
	if err != nil {
		return nil, err
	}
	defer rec.Stop()
	s := &scaleRun{env: env, cfg: cfg, rec: rec}
	defer func() {
		if s.daemon != nil {
			s.daemon.Stop()
		}
	}()
	var out []ScaleResult
	ns := append([]int(nil), cfg.Ns...)
	for i := 0; i < len(ns); i++ {
		n := ns[i]
		if !cfg.Deadline.IsZero() && time.Now().After(cfg.Deadline) {
			cfg.Logf("scale: time budget spent; stopping before N = %d", n)
			break
		}
		r, err := s.runN(ctx, n)
		if err != nil {
			return out, fmt.Errorf("scaling to %d Deployments: %w", n, err)
		}
		out = append(out, r)
		cfg.Logf("scale: N = %d done: RSS %.1f MB, idle CPU %.2f %%, lag p99 %.3f s, broken %v", n, r.Idle.RSSMB, r.Idle.CPUPct,
			r.Median(func(w WaveResult) float64 { return w.LagP99 }), r.Broken)
		if i == len(ns)-1 && len(r.Broken) == 0 && cfg.PushStep > 0 && n+cfg.PushStep <= cfg.PushMax {
			ns = append(ns, n+cfg.PushStep)
		}
	}
	return out, nil
}

// appAt is the i-th Deployment of the benchmark: 100 per namespace, every
// tenth one rolling (and the only ones meshed: the others never take a
// request, so their proxies would only add scrape load).
func (s *scaleRun) appAt(i int) App {
	rolling := i%10 == 0
	a := App{Namespace: fmt.Sprintf("scale-%02d", i/100), Name: fmt.Sprintf("app-%03d", i%100), Replicas: 1,
		Annotations: map[string]string{rollout.KeyInterval: s.cfg.Interval.String()},
		Behaviour:   map[string]string{"meshsim/error-rate": "0", "meshsim/latency-ms": "10"},
		Unmeshed:    !rolling}
	if rolling {
		a.RPS = s.cfg.RPS
	}
	return a
}

func isRolling(i int) bool { return i%10 == 0 }

func (s *scaleRun) runN(ctx context.Context, n int) (ScaleResult, error) {
	r := ScaleResult{N: n}
	logf := s.cfg.Logf
	if s.daemon == nil {
		d, err := s.startDaemon(ctx, n)
		if err != nil {
			return r, err
		}
		s.daemon = d
	}
	// Grow to N.
	start := time.Now()
	from := len(s.apps)
	var fresh []App
	for i := from; i < n; i++ {
		a := s.appAt(i)
		if i%100 == 0 || i == from {
			if err := EnsureNamespace(ctx, s.env.Client, a.Namespace); err != nil {
				return r, err
			}
		}
		fresh = append(fresh, a)
	}
	if err := parallel(fresh, 16, func(a App) error { return a.Create(ctx, s.env.Client) }); err != nil {
		return r, err
	}
	s.apps = append(s.apps, fresh...)
	keys := make([]string, len(s.apps))
	var rollingKeys []string
	for i, a := range s.apps {
		keys[i] = a.Key()
		if isRolling(i) {
			rollingKeys = append(rollingKeys, a.Key())
		}
	}
	r.Rolling = len(rollingKeys)
	logf("scale: N = %d: %d Deployments created; waiting for adoption", n, len(fresh))
	if err := s.waitAdopted(ctx, keys, 15*time.Minute); err != nil {
		return r, err
	}
	r.Adopt = time.Since(start)
	logf("scale: N = %d adopted in %s", n, r.Adopt.Round(time.Second))

	// A fresh process with N managed: memory without the history of growing.
	s.daemon.Stop()
	d, err := s.startDaemon(ctx, n)
	if err != nil {
		return r, err
	}
	s.daemon = d
	if err := s.settle(ctx, n); err != nil {
		return r, err
	}
	if r.Idle, err = s.measureIdle(ctx, n, s.cfg.Profile); err != nil {
		return r, err
	}
	if s.cfg.Profile {
		r.Profiles = append(r.Profiles, r.Idle.profile)
	}
	for w := 1; w <= s.cfg.Waves; w++ {
		wr, err := s.wave(ctx, n, w, rollingKeys, 0)
		if err != nil {
			return r, err
		}
		r.Waves = append(r.Waves, wr)
		r.Profiles = append(r.Profiles, wr.profile...)
		logf("scale: N = %d wave %d: %d/%d converged in %s, lag p50 %.3f s p99 %.3f s, %.2f writes/step, CPU %.1f %%, queue max %.0f",
			n, w, wr.Converged, wr.Rolling, wr.Duration.Round(time.Second), wr.LagP50, wr.LagP99, wr.WritesPerStep, wr.CPUPct, wr.QueueMax)
	}
	for w := 1; w <= s.cfg.StaggeredWaves; w++ {
		wr, err := s.wave(ctx, n, 0, rollingKeys, s.cfg.Interval)
		if err != nil {
			return r, err
		}
		r.Staggered = append(r.Staggered, wr)
		logf("scale: N = %d staggered wave %d: %d/%d converged in %s, lag p50 %.3f s p99 %.3f s, %.2f writes/step advance, CPU %.1f %%, queue max %.0f",
			n, w, wr.Converged, wr.Rolling, wr.Duration.Round(time.Second), wr.LagP50, wr.LagP99, Median(wr.AdvanceWrites), wr.CPUPct, wr.QueueMax)
	}
	r.Broken = broken(r)
	if alt := s.cfg.Alt; alt != nil {
		s.daemon.Stop()
		d, err := s.startDaemonWith(ctx, n, alt.Workers, alt.Env, alt.Flags...)
		if err != nil {
			return r, err
		}
		s.daemon = d
		if err := s.settle(ctx, n); err != nil {
			return r, err
		}
		if r.Alt, err = s.measureIdle(ctx, n, false); err != nil {
			return r, err
		}
		for w := 1; w <= s.cfg.Waves; w++ {
			wr, err := s.wave(ctx, n, 0, rollingKeys, 0)
			if err != nil {
				return r, err
			}
			r.AltWaves = append(r.AltWaves, wr)
			logf("scale: N = %d wave %d with %s: %d/%d converged in %s, lag p50 %.3f s p99 %.3f s, CPU %.1f %%, queue max %.0f",
				n, w, alt, wr.Converged, wr.Rolling, wr.Duration.Round(time.Second), wr.LagP50, wr.LagP99, wr.CPUPct, wr.QueueMax)
		}
	}
	return r, nil
}

// StaggeredMedian is Median over the staggered waves.
func (r ScaleResult) StaggeredMedian(f func(WaveResult) float64) float64 {
	var xs []float64
	for _, w := range r.Staggered {
		xs = append(xs, f(w))
	}
	return Median(xs)
}

// AltMedian is Median over the waves with ScaleConfig.Alt.
func (r ScaleResult) AltMedian(f func(WaveResult) float64) float64 {
	var xs []float64
	for _, w := range r.AltWaves {
		xs = append(xs, f(w))
	}
	return Median(xs)
}

func broken(r ScaleResult) []string {
	var out []string
	if r.Idle.RSSMB > Targets.RSSMB || r.Median(func(w WaveResult) float64 { return w.RSSMaxMB }) > Targets.RSSMB {
		out = append(out, "RSS")
	}
	if r.Idle.CPUPct > Targets.IdleCPUPct {
		out = append(out, "idle CPU")
	}
	if r.Median(func(w WaveResult) float64 { return w.LagP99 }) > Targets.LagP99 {
		out = append(out, "step lag p99")
	}
	if len(r.Staggered) > 0 && r.StaggeredMedian(func(w WaveResult) float64 { return w.LagP99 }) > Targets.LagP99 {
		out = append(out, "step lag p99 (staggered)")
	}
	// A step is a step advance: its status write(s) and its split write.
	// Every write of a rollout divided by its weight changes is reported
	// too, but it mostly counts the promotion's stages, which are no step.
	if r.Median(func(w WaveResult) float64 { return Median(w.AdvanceWrites) }) > Targets.WritesPerStep {
		out = append(out, "writes per step")
	}
	for _, w := range r.Waves {
		if w.Converged < w.Rolling {
			out = append(out, "convergence")
			break
		}
	}
	return out
}

func (s *scaleRun) startDaemon(ctx context.Context, n int) (*Daemon, error) {
	return s.startDaemonWith(ctx, n, s.cfg.Workers, nil)
}

func (s *scaleRun) startDaemonWith(ctx context.Context, n, workers int, env []string, flags ...string) (*Daemon, error) {
	args := []string{"--default-min-requests", "5", "--pprof"}
	if workers > 0 {
		args = append(args, "--workers", strconv.Itoa(workers))
	}
	args = append(args, flags...)
	return s.env.StartCanarydWithEnv(ctx, "scale-N"+strconv.Itoa(n), env, args...)
}

// waitAdopted waits until every key is under management with its split at
// stable 100 %: idle, or done with its last rollout either way (a rollout
// that failed in an earlier wave stays Failed until the next revision).
func (s *scaleRun) waitAdopted(ctx context.Context, keys []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		n := 0
		for _, k := range keys {
			st := s.rec.Status(k)
			if (st.Phase == rollout.PhaseIdle || st.Phase == rollout.PhaseSucceeded || st.Phase == rollout.PhaseFailed) && s.rec.Weight(k) == 0 {
				n++
			}
		}
		if n == len(keys) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Deployments adopted within %s", n, len(keys), timeout)
		}
		if time.Since(last) > 30*time.Second {
			s.cfg.Logf("scale: %d of %d adopted", n, len(keys))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// settle waits until canaryd has reconciled every key once after its start
// and its queue is empty, then a little longer.
func (s *scaleRun) settle(ctx context.Context, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		m, err := s.daemon.Metrics(ctx)
		if err != nil {
			return err
		}
		if m.Get("canaryd_reconcile_duration_seconds") >= float64(n) && m.Get("canaryd_workqueue_depth") == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("canaryd did not settle: %v reconciles of %d, queue %v", m.Get("canaryd_reconcile_duration_seconds"), n, m.Get("canaryd_workqueue_depth"))
		}
		time.Sleep(2 * time.Second)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return nil
	}
}

// Idle is a canaryd process managing N Deployments with nothing rolling.
type Idle struct {
	// RSSMB is the median of samples over the idle window, as the OS sees
	// it. HeapInUseMB is the Go heap in use at its end (live data plus
	// garbage not yet collected); HeapLiveMB the heap after a forced
	// collection: what the caches and metrics hold.
	RSSMB, HeapInUseMB, HeapLiveMB float64
	CPUPct                         float64 // % of one core over the window
	// From the runtime after the forced collection: memory obtained from the
	// OS, heap returned to it, and the heap size of the next collection.
	SysMB, ReleasedMB, NextGCMB float64
	profile                     string
}

// measureIdle samples memory every 2 s and CPU over the idle window, from
// /proc, scraping /metrics only at the ends (a scrape of thousands of series
// costs CPU itself), then forces a collection to read the live heap.
func (s *scaleRun) measureIdle(ctx context.Context, n int, keep bool) (Idle, error) {
	var r Idle
	m0, err := s.daemon.Metrics(ctx)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	pid := strconv.Itoa(s.daemon.Pid())
	var rss []float64
	for time.Since(t0) < s.cfg.IdleWindow {
		if v, err := rssBytes(pid); err == nil {
			rss = append(rss, v/1e6)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	m1, err := s.daemon.Metrics(ctx)
	if err != nil {
		return r, err
	}
	dt := time.Since(t0).Seconds()
	r.CPUPct = (m1.Get("process_cpu_seconds_total") - m0.Get("process_cpu_seconds_total")) / dt * 100
	rss = append(rss, m1.Get("process_resident_memory_bytes")/1e6)
	r.RSSMB = Median(rss)
	r.HeapInUseMB = m1.Get("go_memstats_heap_inuse_bytes") / 1e6
	// The heap endpoint with gc=1 collects first: the heap allocated right
	// after it is the live data.
	r.profile = filepath.Join(s.env.Dir, fmt.Sprintf("heap-idle-N%d-%d.pprof", n, s.daemon.Pid()))
	if keep {
		r.profile = filepath.Join(s.cfg.ProfileDir, fmt.Sprintf("heap-idle-N%d.pprof", n))
	}
	if err := s.daemon.Profile(ctx, "heap?gc=1", r.profile); err != nil {
		return r, err
	}
	m, err := s.daemon.Metrics(ctx)
	if err != nil {
		return r, err
	}
	r.HeapLiveMB = m.Get("go_memstats_heap_alloc_bytes") / 1e6
	r.SysMB, r.ReleasedMB, r.NextGCMB = m.Get("go_memstats_sys_bytes")/1e6, m.Get("go_memstats_heap_released_bytes")/1e6, m.Get("go_memstats_next_gc_bytes")/1e6
	return r, nil
}

// pprofTop renders the top of a profile as text with go tool pprof, next
// to it: by flat CPU for a CPU profile, by cumulative live bytes for a heap
// profile (where the allocation sites of the cached objects show).
func pprofTop(profile string) (string, error) {
	args := []string{"tool", "pprof", "-top", "-nodecount=30"}
	if strings.Contains(filepath.Base(profile), "heap") {
		args = append(args, "-cum", "-sample_index=inuse_space")
	}
	out, err := exec.Command("go", append(args, profile)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w: %s", profile, err, out)
	}
	txt := profile + ".txt"
	if err := os.WriteFile(txt, out, 0o644); err != nil {
		return "", err
	}
	return txt, nil
}
