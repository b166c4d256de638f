package bench

import (
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/cluster"
)

var fullFlag = flag.Bool("bench-full", false, "run the full benchmark (also CANARYD_BENCH_FULL=1) and write test/bench/report")

func fullRun() bool { return *fullFlag || os.Getenv("CANARYD_BENCH_FULL") == "1" }

// plan is what one run does.
type plan struct {
	mode           string
	nodes          int
	trials, lanes  int
	goodInterval   time.Duration
	scale          ScaleConfig
	reportDir      string
	budget         time.Duration
	detectInterval time.Duration
	only           string // "detect" or "scale": run one half
}

// override applies the environment's knobs, for running part of the suite:
// CANARYD_BENCH_ONLY=detect|scale, CANARYD_BENCH_NS=500,2000 (no push
// beyond), CANARYD_BENCH_WAVES=n, CANARYD_BENCH_STAGGERED=n (waves with
// the starts spread over one interval), CANARYD_BENCH_TRIALS=n, and
// CANARYD_BENCH_REPORT=dir for the report, CANARYD_BENCH_ALT=none to skip
// the second measurement of every N with tuned settings, or e.g.
// CANARYD_BENCH_ALT=workers=16,GOMEMLIMIT=100MiB,--kube-api-qps=200 to
// choose them (a key starting with -- is a canaryd flag). (And
// CANARYD_BENCH_RERENDER=dir/results.json renders a run's report again.)
func (p *plan) override() error {
	if v := os.Getenv("CANARYD_BENCH_REPORT"); v != "" {
		p.reportDir = v
		p.scale.ProfileDir = filepath.Join(v, "profiles")
	}
	if v := os.Getenv("CANARYD_BENCH_ALT"); v == "none" {
		p.scale.Alt = nil
	} else if v != "" {
		alt := &AltConfig{}
		for _, f := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(f), "=")
			n, err := strconv.Atoi(val)
			switch {
			case !ok:
				return fmt.Errorf("CANARYD_BENCH_ALT=%q: %q is not key=value; want e.g. workers=16,GOMEMLIMIT=100MiB or none", v, f)
			case k == "workers" && (err != nil || n < 1):
				return fmt.Errorf("CANARYD_BENCH_ALT=%q: workers=%q: want a whole number of at least 1", v, val)
			case k == "workers":
				alt.Workers = n
			case strings.HasPrefix(k, "--"):
				alt.Flags = append(alt.Flags, k+"="+val)
			default:
				alt.Env = append(alt.Env, k+"="+val)
			}
		}
		p.scale.Alt = alt
	}
	p.only = os.Getenv("CANARYD_BENCH_ONLY")
	if p.only != "" && p.only != "detect" && p.only != "scale" {
		return fmt.Errorf("CANARYD_BENCH_ONLY=%q: want detect or scale", p.only)
	}
	if v := os.Getenv("CANARYD_BENCH_NS"); v != "" {
		p.scale.Ns, p.scale.PushStep = nil, 0
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 10 {
				return fmt.Errorf("CANARYD_BENCH_NS=%q: want rising Deployment counts of at least 10, e.g. 500,2000", v)
			}
			p.scale.Ns = append(p.scale.Ns, n)
		}
	}
	for _, knob := range []struct {
		env string
		to  *int
	}{{"CANARYD_BENCH_WAVES", &p.scale.Waves}, {"CANARYD_BENCH_TRIALS", &p.trials}, {"CANARYD_BENCH_STAGGERED", &p.scale.StaggeredWaves}} {
		if v := os.Getenv(knob.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || (n == 0 && knob.env != "CANARYD_BENCH_STAGGERED") {
				return fmt.Errorf("%s=%q: want a whole number of at least 1 (CANARYD_BENCH_STAGGERED: 0 or more)", knob.env, v)
			}
			*knob.to = n
		}
	}
	return nil
}

// smokePlan is the bounded run of `make test`. Its report goes to
// <repo>/_out/bench-smoke (ignored by git), to look at after a run.
func smokePlan(t *testing.T) plan {
	dir := filepath.Join(t.TempDir(), "report")
	if root, err := cluster.RepoRoot(); err == nil {
		dir = filepath.Join(root, "_out", "bench-smoke")
	}
	return plan{mode: "smoke", nodes: 2, trials: 3, lanes: 3, goodInterval: 5 * time.Second, detectInterval: 30 * time.Second,
		scale:     ScaleConfig{Ns: []int{50}, Waves: 1, Interval: 5 * time.Second, RPS: 40, IdleWindow: 10 * time.Second, WaveTimeout: 2 * time.Minute},
		reportDir: dir, budget: 3 * time.Minute}
}

func fullPlan() plan {
	dir := "report"
	return plan{mode: "full", nodes: 8, trials: 30, lanes: 10, goodInterval: 10 * time.Second, detectInterval: 30 * time.Second,
		scale: ScaleConfig{Ns: []int{100, 500, 1000, 2000}, PushStep: 1000, PushMax: 6000, Waves: 2, StaggeredWaves: 1, Interval: 5 * time.Second, RPS: 40,
			IdleWindow: 20 * time.Second, WaveTimeout: 5 * time.Minute, Profile: true, ProfileDir: filepath.Join(dir, "profiles"),
			// The second measurement of every N: canaryd's defaults before
			// 16 workers and 200/400 API requests per second.
			Alt: &AltConfig{Workers: 4, Flags: []string{"--kube-api-qps=50", "--kube-api-burst=100"}}},
		reportDir: dir, budget: 50 * time.Minute}
}

// TestBench runs the benchmark: the smoke by default, the full suite with
// -bench-full or CANARYD_BENCH_FULL=1. The smoke asserts that every part ran
// and that its numbers are sane, never how fast anything was.
func TestBench(t *testing.T) {
	if path := os.Getenv("CANARYD_BENCH_RERENDER"); path != "" {
		rerender(t, path)
		return
	}
	if _, err := cluster.FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("CI is set and the control-plane binaries are missing: %v", err)
		}
		t.Skipf("control-plane binaries missing (run test/bootstrap.sh): %v", err)
	}
	pl := smokePlan(t)
	if fullRun() {
		pl = fullPlan()
	} else if testing.Short() {
		t.Skip("the smoke benchmark starts a control plane; skipped with -short")
	}
	if err := pl.override(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	work := t.TempDir()
	if os.Getenv("CANARYD_KEEP_DIR") != "" {
		work, _ = os.MkdirTemp("", "canaryd-bench-")
		t.Logf("keeping the work directory %s", work)
	}
	logf := func(format string, args ...any) {
		t.Logf("%s "+format, append([]any{time.Since(start).Round(time.Second)}, args...)...)
	}
	env, err := StartEnv(ctx, EnvOptions{Dir: work, Nodes: pl.nodes})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	logf("environment up: cluster, Prometheus %s, mesh simulator", env.Cluster.Prometheus.URL)
	if err := clearReport(pl.reportDir); err != nil {
		t.Fatal(err)
	}
	if pl.mode == "full" {
		if err := os.MkdirAll(pl.scale.ProfileDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rep := Report{Mode: pl.mode, Started: start, Build: env.Build, Judge: Judge{Alpha: 0.01, Beta: 0.01, Tolerance: 0.5, Effect: 2}, Scrape: time.Second, ScaleCfg: pl.scale}

	if pl.only != "scale" {
		rep.Detect, rep.CheckSeconds = runDetection(t, ctx, env, pl, rep.Judge, logf)
		rep.Findings = detectFindings(rep.Detect, rep.Judge.Alpha)
	}
	pl.scale.Logf = logf
	pl.scale.Deadline = start.Add(pl.budget)
	if pl.only != "detect" {
		rep.Scale, err = RunScale(ctx, env, pl.scale)
		if err != nil {
			t.Errorf("scale: %v", err)
		}
		rep.Findings = append(rep.Findings, checkScale(t, rep.Scale)...)
	}
	for _, s := range rep.Scale {
		for _, p := range s.Profiles {
			if _, err := pprofTop(p); err != nil {
				t.Errorf("profile: %v", err)
			}
		}
	}
	if b, err := os.ReadFile("profiling.md"); err == nil {
		rep.Notes = string(b)
	}
	rep.Took = time.Since(start)
	if err := rep.Write(pl.reportDir); err != nil {
		t.Fatal(err)
	}
	checkReport(t, pl.reportDir)
	logf("report written to %s", pl.reportDir)
}

// rerender writes a report again from a run's results.json (and the
// current profiling.md), next to it: no cluster, for working on the report.
func rerender(t *testing.T, path string) {
	rep, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("profiling.md"); err == nil {
		rep.Notes = string(b)
	}
	dir := filepath.Dir(path)
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	checkReport(t, dir)
	t.Logf("report rendered again in %s", dir)
}

func runDetection(t *testing.T, ctx context.Context, env *Env, pl plan, j Judge, logf func(string, ...any)) ([]DetectResult, float64) {
	scenarios := []struct {
		sc Scenario
		ns string
	}{{BadCanary, "detect-bad"}, {SlowCanary, "detect-slow"}, {GoodCanary, "detect-good"}}
	var namespaces []string
	for _, s := range scenarios {
		namespaces = append(namespaces, s.ns)
	}
	d, err := env.StartCanaryd(ctx, "detect", "--namespaces", strings.Join(namespaces, ","), "--analysis-period", "1s",
		"--judge-alpha", fmt.Sprint(j.Alpha), "--judge-beta", fmt.Sprint(j.Beta), "--judge-tolerance", fmt.Sprint(j.Tolerance))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	m0, err := d.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []DetectResult
	for _, s := range scenarios {
		sc := s.sc
		sc.Interval = pl.detectInterval
		if !sc.WantRollback {
			sc.Interval = pl.goodInterval
		}
		res, err := RunDetect(ctx, env, sc, DetectConfig{Namespace: s.ns, Lanes: pl.lanes, Trials: pl.trials, ApexRPS: 200,
			Steps: "100m,200m,500m", Timeout: 3 * time.Minute, Logf: logf})
		if err != nil {
			t.Errorf("%s: %v", sc.Name, err)
		}
		checkDetect(t, res)
		out = append(out, res)
	}
	m1, err := d.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkS := 0.0
	if n := m1.Get("canaryd_check_duration_seconds") - m0.Get("canaryd_check_duration_seconds"); n > 0 {
		checkS = (m1.SumOf("canaryd_check_duration_seconds") - m0.SumOf("canaryd_check_duration_seconds")) / n
	}
	// The scale run's canaryd watches every namespace: these go first.
	for _, ns := range namespaces {
		if err := env.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting %s: %v", ns, err)
		}
	}
	for _, ns := range namespaces {
		_ = waitFor(ctx, 3*time.Minute, func() bool {
			_, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return err != nil
		})
	}
	return out, checkS
}

// checkDetect: every trial ended; a bad canary was rolled back after
// serving requests. A good canary's outcome is what the benchmark measures
// (false rollbacks against α), so it is reported, not asserted: a single
// false rollback in three trials is within what the judge allows.
func checkDetect(t *testing.T, res DetectResult) {
	t.Helper()
	if len(res.Trials) < res.Config.Trials {
		t.Errorf("%s: %d of %d trials ran", res.Scenario.Name, len(res.Trials), res.Config.Trials)
	}
	for i, tr := range res.Trials {
		if tr.Outcome != rollout.PhaseSucceeded && tr.Outcome != rollout.PhaseFailed {
			t.Errorf("%s trial %d: no outcome (%s)", res.Scenario.Name, i, tr.Reason)
			continue
		}
		if tr.FirstRequest.IsZero() {
			t.Errorf("%s trial %d: the canary never served a request", res.Scenario.Name, i)
			continue
		}
		if !res.Scenario.WantRollback {
			if tr.Outcome == rollout.PhaseFailed {
				t.Logf("%s trial %d: FALSE ROLLBACK: %s", res.Scenario.Name, i, tr.Reason)
			}
			continue
		}
		if tr.Outcome != rollout.PhaseFailed {
			t.Errorf("%s trial %d: promoted, want rolled back (%s)", res.Scenario.Name, i, tr.Reason)
			continue
		}
		if !(tr.CanaryRequests > 0 && tr.Detect() > 0 && !tr.WeightZero.Before(tr.WeightUp)) {
			t.Errorf("%s trial %d: weight up %v, first request %v, weight 0 %v, %v requests: not a detection",
				res.Scenario.Name, i, tr.WeightUp, tr.FirstRequest, tr.WeightZero, tr.CanaryRequests)
		}
	}
}

// detectFindings flags what the report should lead with: false rollbacks
// beyond the judge's bound, and missed bad canaries.
func detectFindings(rs []DetectResult, alpha float64) []string {
	var out []string
	for _, r := range rs {
		f := figures(r)
		switch {
		case !r.Scenario.WantRollback && f.rollbacks > 0:
			var why string
			for _, tr := range r.Trials {
				if tr.Outcome == rollout.PhaseFailed {
					why = tr.Reason
					break
				}
			}
			out = append(out, fmt.Sprintf("%s: %d false rollbacks in %d trials (the judge's bound is α = %.0f %% per rollout), e.g. %q",
				r.Scenario.Name, f.rollbacks, len(r.Trials), 100*alpha, why))
		case r.Scenario.WantRollback && f.promotions > 0:
			out = append(out, fmt.Sprintf("%s: %d of %d bad canaries promoted", r.Scenario.Name, f.promotions, len(r.Trials)))
		}
	}
	return out
}

// checkScale asserts what must hold at any speed, and returns what the
// report should flag.
func checkScale(t *testing.T, rs []ScaleResult) []string {
	t.Helper()
	var findings []string
	if len(rs) == 0 {
		t.Error("the scale benchmark produced no result")
	}
	for _, r := range rs {
		if i := r.Idle; i.RSSMB <= 0 || i.HeapInUseMB <= 0 || i.HeapLiveMB <= 0 || i.HeapLiveMB > i.RSSMB {
			t.Errorf("N = %d: memory not measured: %+v", r.N, i)
		}
		all := append(append([]WaveResult(nil), r.Waves...), r.AltWaves...)
		for i, w := range all {
			if w.Converged != w.Rolling {
				findings = append(findings, fmt.Sprintf("N = %d wave %d: %d of %d rollouts succeeded (%d failed) within %s: %s", r.N, i+1, w.Converged, w.Rolling,
					w.Failed, w.Duration.Round(time.Second), strings.Join(w.FailReasons, "; ")))
			}
			if len(w.OddSequences) > 0 {
				findings = append(findings, fmt.Sprintf("N = %d wave %d: %d promoted rollouts did not write exactly 100m, 200m, 500m, 1000m, 0, e.g. %s",
					r.N, i+1, len(w.OddSequences), w.OddSequences[0]))
			}
			// Every weight change is a decision users see as an Event: a
			// promoted rollout raises at least five.
			if w.Converged > 0 && w.EventsPerRollout < 5 {
				findings = append(findings, fmt.Sprintf("N = %d wave %d: %.2f Events per rollout in the API by the wave's end, want at least 5 (one per weight change)",
					r.N, i+1, w.EventsPerRollout))
			}
			if len(w.Lags) == 0 || w.CPUPct <= 0 || w.Checks <= 0 || w.QueriesPerCheck <= 0 {
				t.Errorf("N = %d wave %d: numbers missing: %d lags, CPU %v %%, %v checks, %v queries/check", r.N, i+1, len(w.Lags), w.CPUPct, w.Checks, w.QueriesPerCheck)
			}
			// Every write canaryd counted went over the wire, where client-go
			// counted it too (plus Events and retried conflicts).
			if w.WritesNoEvents < w.ControllerWrites || w.ControllerWrites <= 0 {
				t.Errorf("N = %d wave %d: client-go counted %v writes (Events aside), canaryd %v", r.N, i+1, w.WritesNoEvents, w.ControllerWrites)
			}
		}
	}
	if !fullRun() {
		for _, f := range findings {
			t.Error(f)
		}
	}
	return findings
}

// checkReport: the markdown is there and every plot it names is a PNG.
func checkReport(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(l, "](")
		if !ok || !strings.HasPrefix(l, "![") {
			continue
		}
		name := strings.TrimSuffix(rest, ")")
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("the report shows %s: %v", name, err)
			continue
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s is not a PNG: %v", name, err)
		}
		f.Close()
		n++
	}
	if n < 5 {
		t.Errorf("the report has %d plots, want at least 5", n)
	}
}

// clearReport empties a report directory for a new run but keeps its
// experiments/: the reports of earlier partial runs that profiling.md cites.
func clearReport(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "experiments" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
