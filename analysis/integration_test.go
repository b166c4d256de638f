package analysis_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/test/cluster"
)

// These tests run the analysis against a real Prometheus (the harness's
// StartPrometheus, scraping every second) that scrapes an emitter printing
// Linkerd proxy exposition. Each scenario has its own deployments in one
// namespace, so they run side by side.

const scrape = time.Second

type world struct {
	prom *cluster.Prometheus
	em   *emitter
}

func startWorld(t *testing.T) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Prometheus server; skipped with -short")
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		if _, statErr := os.Stat("/usr/bin/prometheus"); statErr != nil {
			t.Skip("no prometheus binary (apt-get install prometheus)")
		}
	}
	em := startEmitter(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := cluster.StartPrometheus(ctx, cluster.PromOptions{Dir: t.TempDir(), ScrapeInterval: scrape, StaticTargets: []string{em.addr}})
	if err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	return &world{prom: prom, em: em}
}

func (w *world) analyzer(t *testing.T, checks []analysis.Check) *analysis.Prom {
	t.Helper()
	p, err := analysis.NewPrometheus(analysis.Config{
		Client:         analysis.ClientConfig{Address: w.prom.URL, Timeout: 5 * time.Second},
		ScrapeInterval: scrape,
		Checks:         checks,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// scenario starts stable and canary traffic and returns the target to judge.
func (w *world) scenario(t *testing.T, name string, stable, canary traffic) analysis.Target {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sp, cp := w.em.pod("shop", name), w.em.pod("shop", name+"-canary")
	start := time.Now()
	go w.em.drive(ctx, sp, stable, 1)
	if canary.rps > 0 {
		go w.em.drive(ctx, cp, canary, 2)
	}
	return analysis.Target{
		Namespace: "shop", Canary: name + "-canary", Stable: name,
		Window: 5 * time.Second, Since: start,
		MinSuccessRate: 99, MaxLatencyP99: 500 * time.Millisecond, MinRequests: 20,
	}
}

// until analyses every second until done says stop or the deadline passes,
// and returns every result seen.
func until(t *testing.T, p *analysis.Prom, tg analysis.Target, deadline time.Duration, done func(analysis.Result) bool) []analysis.Result {
	t.Helper()
	var seen []analysis.Result
	for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(time.Second) {
		tg.Now = time.Now()
		r := p.Analyze(context.Background(), tg)
		seen = append(seen, r)
		t.Logf("%s: %s final=%v canary %+v — %s", time.Since(tg.Since).Round(100*time.Millisecond), r.Verdict, r.Final, r.Canary, r.Reason)
		if done(r) {
			return seen
		}
	}
	t.Fatalf("no decision within %s", deadline)
	return nil
}

func TestRealPrometheus(t *testing.T) {
	w := startWorld(t)
	failureRate := analysis.Check{Name: "canary-failure-rps", Max: ptr(5),
		Query: `sum(rate(response_total{namespace="{{.namespace}}",deployment="{{.canary}}",direction="inbound",classification="failure"}[{{.interval}}])) or vector(0)`}
	p := w.analyzer(t, []analysis.Check{failureRate})
	if err := p.Validate(context.Background()); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	t.Run("scenarios", func(t *testing.T) {
		t.Run("a good canary passes", func(t *testing.T) {
			t.Parallel()
			tg := w.scenario(t, "good", traffic{rps: 40, latencyMs: 8}, traffic{rps: 20, latencyMs: 8})
			tg.Checks = []string{"canary-failure-rps"}
			seen := until(t, p, tg, 30*time.Second, func(r analysis.Result) bool { return r.Verdict != analysis.Inconclusive })
			r := seen[len(seen)-1]
			if r.Verdict != analysis.Pass || len(r.Checks) != 1 || r.Checks[0].Verdict != analysis.Pass {
				t.Fatalf("got %s (%s), checks %+v; want Pass", r.Verdict, r.Reason, r.Checks)
			}
		})
		t.Run("a canary with 20% errors is rolled back at once", func(t *testing.T) {
			t.Parallel()
			tg := w.scenario(t, "bad", traffic{rps: 40, latencyMs: 8}, traffic{rps: 20, errRate: 0.2, latencyMs: 8})
			seen := until(t, p, tg, 30*time.Second, func(r analysis.Result) bool { return r.Final })
			if r := seen[len(seen)-1]; !strings.Contains(r.Reason, "requests failed") {
				t.Errorf("final reason %q is not about failed requests", r.Reason)
			}
			neverPassed(t, seen)
		})
		t.Run("a canary three times slower than stable is rolled back", func(t *testing.T) {
			t.Parallel()
			tg := w.scenario(t, "slow", traffic{rps: 40, latencyMs: 30}, traffic{rps: 20, latencyMs: 90})
			seen := until(t, p, tg, 30*time.Second, func(r analysis.Result) bool { return r.Final })
			if r := seen[len(seen)-1]; !strings.Contains(r.Reason, "slower than") {
				t.Errorf("final reason %q is not about latency", r.Reason)
			}
			neverPassed(t, seen)
		})
		t.Run("a canary without traffic is inconclusive, its admin-port scrapes notwithstanding", func(t *testing.T) {
			t.Parallel()
			tg := w.scenario(t, "idle", traffic{rps: 40, latencyMs: 8}, traffic{})
			time.Sleep(8 * scrape)
			for range 3 {
				tg.Now = time.Now()
				r := p.Analyze(context.Background(), tg)
				if r.Verdict != analysis.Inconclusive || r.Canary.Requests != 0 {
					t.Fatalf("got %s with %v canary requests (%s); want Inconclusive with 0", r.Verdict, r.Canary.Requests, r.Reason)
				}
				if r.Stable.Requests < 100 {
					t.Fatalf("stable requests %v: is Prometheus scraping the emitter?", r.Stable.Requests)
				}
				time.Sleep(scrape)
			}
		})
	})

	t.Run("prometheus stopped mid-rollout is an error, and recovery is clean", func(t *testing.T) {
		outage(t, w, p)
	})
}

// outage stops Prometheus while checks run: Error, never Fail; after a
// restart the same target passes again.
func outage(t *testing.T, w *world, p *analysis.Prom) {
	tg := w.scenario(t, "outage", traffic{rps: 40, latencyMs: 8}, traffic{rps: 20, latencyMs: 8})
	until(t, p, tg, 30*time.Second, func(r analysis.Result) bool { return r.Verdict == analysis.Pass })
	// stop while queries are in flight
	stopped := make(chan error, 1)
	go func() { time.Sleep(5 * time.Millisecond); stopped <- w.prom.Stop() }()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		tg.Now = time.Now()
		r := p.Analyze(context.Background(), tg)
		if r.Verdict == analysis.Error {
			t.Logf("during the outage: %s", r.Reason)
			if !strings.Contains(r.Reason, "prometheus: query") {
				t.Errorf("reason %q does not name the failed query", r.Reason)
			}
			break
		}
		if r.Verdict != analysis.Pass {
			t.Fatalf("got %s (%s) while Prometheus went away; want Pass or Error", r.Verdict, r.Reason)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	tg.Now = time.Now()
	if r := p.Analyze(context.Background(), tg); r.Verdict != analysis.Error || r.Final {
		t.Fatalf("with Prometheus down: %s final=%v (%s); want Error", r.Verdict, r.Final, r.Reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.prom.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	until(t, p, tg, 30*time.Second, func(r analysis.Result) bool { return r.Verdict == analysis.Pass })
}

func TestRealPrometheusRejectsABadCustomQuery(t *testing.T) {
	w := startWorld(t)
	checks, err := analysis.ParseChecks([]byte(`
checks:
  - name: fine
    query: 'sum(up{namespace="{{.namespace}}"}) or vector(0)'
    max: 100
  - name: no-such-function
    query: 'sum(nonexistent_fn(response_total{deployment="{{.canary}}"}[{{.interval}}]))'
    max: 1
  - name: bad-range
    query: 'sum(rate(response_total{deployment="{{.canary}}"}[5x]))'
    max: 1
`))
	if err != nil {
		t.Fatalf("the file is well-formed as far as canaryd can tell: %v", err)
	}
	err = w.analyzer(t, checks).Validate(context.Background())
	if err == nil {
		t.Fatal("Validate accepted queries Prometheus rejects")
	}
	t.Logf("Validate: %v", err)
	for _, want := range []string{`custom check "no-such-function"`, `custom check "bad-range"`, "bad_data", "HTTP 400"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(err.Error(), `"fine"`) {
		t.Errorf("error blames the good check: %v", err)
	}
}

func TestCustomTemplateSyntaxErrorNamesTheCheck(t *testing.T) {
	_, err := analysis.ParseChecks([]byte(`
checks:
  - name: p95-latency
    query: 'histogram_quantile(0.95, sum by (le) (rate(response_latency_ms_bucket{deployment="{{ .canary }"}[{{.interval}}])))'
    max: 250
`))
	if err == nil || !strings.Contains(err.Error(), `custom check "p95-latency": template:`) {
		t.Fatalf("got %v, want a template error naming p95-latency", err)
	}
	var target interface{ Unwrap() []error }
	_ = errors.As(err, &target) // joined errors stay inspectable
}

// neverPassed: a bad canary may first fail a threshold (not final) when
// stable's traffic is still thin and the judge wants more evidence, but it
// must never pass, and the last verdict must be the judge's final Fail.
func neverPassed(t *testing.T, seen []analysis.Result) {
	t.Helper()
	for _, r := range seen {
		if r.Verdict == analysis.Pass || r.Verdict == analysis.Error {
			t.Errorf("a bad canary got %s: %s", r.Verdict, r.Reason)
		}
	}
	if last := seen[len(seen)-1]; last.Verdict != analysis.Fail || !last.Final {
		t.Errorf("last verdict %s final=%v, want a final Fail", last.Verdict, last.Final)
	}
}

func ptr(v float64) *float64 { return &v }

// TestRealPrometheusAnswersSharedQueriesAsItAnswersAlone: checks that share
// their queries (several canaries in two namespaces, one name in both) get
// from a real Prometheus exactly the numbers and verdicts they get alone.
// A proxy holds the first check's queries so that the others ask meanwhile
// and go out together.
func TestRealPrometheusAnswersSharedQueriesAsItAnswersAlone(t *testing.T) {
	w := startWorld(t)
	type app struct {
		ns, name string
		canary   traffic
	}
	apps := []app{
		{"shop", "web", traffic{rps: 20, latencyMs: 8}},
		{"shop", "cart", traffic{rps: 20, errRate: 0.1, latencyMs: 8}},
		{"mall", "web", traffic{rps: 20, latencyMs: 30}},
		{"mall", "pay", traffic{rps: 10, errRate: 0.02, latencyMs: 12}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	for i, a := range apps {
		go w.em.drive(ctx, w.em.pod(a.ns, a.name), traffic{rps: 40, latencyMs: 8}, uint64(10+i))
		go w.em.drive(ctx, w.em.pod(a.ns, a.name+"-canary"), a.canary, uint64(20+i))
	}
	time.Sleep(8 * scrape)
	now := time.Now().Add(-2 * scrape) // in the past: every answer is fixed by now
	var targets []analysis.Target
	for _, a := range apps {
		targets = append(targets, analysis.Target{Namespace: a.ns, Canary: a.name + "-canary", Stable: a.name,
			Window: 5 * time.Second, Since: start, Now: now,
			MinSuccessRate: 99, MaxLatencyP99: 500 * time.Millisecond, MinRequests: 20})
	}

	alone, err := analysis.NewPrometheus(analysis.Config{
		Client: analysis.ClientConfig{Address: w.prom.URL, Timeout: 5 * time.Second}, ScrapeInterval: scrape})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]analysis.Result, len(targets))
	for i, tg := range targets {
		want[i] = alone.Analyze(context.Background(), tg)
		if !(want[i].Canary.Requests > 0) || !(want[i].Stable.Requests > 0) {
			t.Fatalf("%s/%s alone: %+v (%s): no traffic seen", tg.Namespace, tg.Canary, want[i].Canary, want[i].Reason)
		}
	}

	upstream, err := url.Parse(w.prom.URL)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	queries := 0
	rp := httputil.NewSingleHostReverseProxy(upstream)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries++
		first := queries <= 2
		mu.Unlock()
		if first {
			<-release
		}
		rp.ServeHTTP(rw, r)
	}))
	defer srv.Close()
	shared, err := analysis.NewPrometheus(analysis.Config{
		Client: analysis.ClientConfig{Address: srv.URL, Timeout: 5 * time.Second}, ScrapeInterval: scrape, Share: true})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]analysis.Result, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() { got[i] = shared.Analyze(context.Background(), tg) })
		if i == 0 {
			time.Sleep(200 * time.Millisecond) // its two queries reach the proxy first
		}
	}
	time.Sleep(time.Second) // the other three wait for them
	close(release)
	wg.Wait()

	if queries != 4 {
		t.Errorf("%d queries for %d checks, want 2 for the first and 2 shared by the other three", queries, len(targets))
	}
	for i := range targets {
		g, w := got[i], want[i]
		if g.Verdict != w.Verdict || g.Reason != w.Reason || !sameNumbers(g.Canary, w.Canary) || !sameNumbers(g.Stable, w.Stable) ||
			!reflect.DeepEqual(g.Judge, w.Judge) {
			t.Errorf("%s/%s shared: %s %q %+v %+v %+v\nalone: %s %q %+v %+v %+v", targets[i].Namespace, targets[i].Canary,
				g.Verdict, g.Reason, g.Canary, g.Stable, g.Judge, w.Verdict, w.Reason, w.Canary, w.Stable, w.Judge)
		}
		t.Logf("%s/%s: %s — %s", targets[i].Namespace, targets[i].Canary, g.Verdict, g.Reason)
	}
}

// sameNumbers compares Numbers with NaN equal to NaN.
func sameNumbers(a, b analysis.Numbers) bool {
	eq := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
	return eq(a.Requests, b.Requests) && eq(a.SuccessRate, b.SuccessRate) && eq(a.LatencyP99Ms, b.LatencyP99Ms)
}

// TestRealPrometheusCountsEveryRequestExactly: the counts since the
// canary's start are the requests the proxies counted in that time, to
// the request, both for a series that existed before (stable: its value
// now minus its value then) and for one born since (the canary: its whole
// value). Traffic pauses around the start and before the check, so that
// the scraped values at both ends are known.
func TestRealPrometheusCountsEveryRequestExactly(t *testing.T) {
	w := startWorld(t)
	sp, cp := w.em.pod("count", "exact"), w.em.pod("count", "exact-canary")
	burst := func(seconds float64, seed uint64, ps ...*proxy) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds*float64(time.Second)))
		defer cancel()
		var wg sync.WaitGroup
		for i, p := range ps {
			wg.Go(func() { w.em.drive(ctx, p, traffic{rps: 40, errRate: 0.1, latencyMs: 8}, seed+uint64(i)) })
		}
		wg.Wait()
	}
	byStatus := func(p *proxy) (total, bad float64) {
		w.em.mu.Lock()
		defer w.em.mu.Unlock()
		for code, s := range p.byStatus {
			total += float64(s.count)
			if code >= 500 {
				bad += float64(s.count)
			}
		}
		return total, bad
	}
	burst(3, 1, sp) // stable's series exist before the canary starts
	time.Sleep(4 * scrape)
	stable0, stableBad0 := byStatus(sp)
	since := time.Now()
	burst(3, 10, sp, cp)
	time.Sleep(4 * scrape)
	stable1, stableBad1 := byStatus(sp)
	canary, canaryBad := byStatus(cp)

	for _, solo := range []bool{true, false} {
		p, err := analysis.NewPrometheus(analysis.Config{
			Client: analysis.ClientConfig{Address: w.prom.URL, Timeout: 5 * time.Second}, ScrapeInterval: scrape, Share: !solo})
		if err != nil {
			t.Fatal(err)
		}
		r := p.Analyze(context.Background(), analysis.Target{Namespace: "count", Canary: "exact-canary", Stable: "exact",
			Window: 5 * time.Second, Since: since, Now: time.Now(), MinSuccessRate: 1, MinRequests: 1})
		if len(r.Judge) == 0 {
			t.Fatalf("no sequential test ran: %s %q", r.Verdict, r.Reason)
		}
		e := r.Judge[0]
		got := [4]float64{e.CanaryTotal, e.CanaryBad, e.StableTotal, e.StableBad}
		want := [4]float64{canary, canaryBad, stable1 - stable0, stableBad1 - stableBad0}
		if got != want || canary < 50 {
			t.Errorf("solo=%v: counted canary %v (%v bad), stable %v (%v bad); the proxies counted %v (%v), %v (%v)",
				solo, got[0], got[1], got[2], got[3], want[0], want[1], want[2], want[3])
		}
	}
}

// The analysis reads counters at instants and subtracts them itself; on the
// same data, its numbers must be what Prometheus computes per series
// (`clamp_min(x - x offset r, 0) or (x unless x offset r)`, the form it
// replaced) and its p99 what histogram_quantile makes of those growths.
func TestRealPrometheusNumbersAgreeWithPrometheusOwnArithmetic(t *testing.T) {
	w := startWorld(t)
	c, err := promapi.NewClient(promapi.Config{Address: w.prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.em.drive(ctx, w.em.pod("agree", "api"), traffic{rps: 40, errRate: 0.02, latencyMs: 8}, 31)
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(scrape / 4) { // Prometheus's first scrape
		if v, _, _, err := api.Query(ctx, "up", time.Time{}); err == nil && len(v.(model.Vector)) > 0 {
			break
		} else if time.Now().After(end) {
			t.Fatalf("no scrape within 30 s: %v", err)
		}
	}
	time.Sleep(8 * scrape) // the first stable pod's counters are older than the 6 s window
	since := time.Now()
	// a canary, slower and failing more, and a second stable pod, both born
	// inside every range
	go w.em.drive(ctx, w.em.pod("agree", "api-canary"), traffic{rps: 30, errRate: 0.1, latencyMs: 30}, 32)
	go w.em.drive(ctx, w.em.pod("agree", "api"), traffic{rps: 20, errRate: 0.05, latencyMs: 60}, 33)
	time.Sleep(9 * scrape)
	now := time.Now().Add(-2 * scrape) // in the past: the answers are fixed
	ask := func(q string) map[string]float64 {
		v, _, _, err := api.Query(context.Background(), q, now)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out := map[string]float64{}
		for _, s := range v.(model.Vector) {
			out[string(s.Metric["deployment"])+"/"+string(s.Metric["classification"])] = float64(s.Value)
		}
		return out
	}
	grow := func(metric string, r time.Duration) string {
		return perSeriesGrowth(metric+`{namespace="agree",direction="inbound",target_port!="4191"}`, fmt.Sprintf("%ds", int(r.Seconds())))
	}
	p := w.analyzer(t, nil)
	// windows that start after, about when, and before the canary's birth
	for _, window := range []time.Duration{3 * time.Second, 6 * time.Second, 30 * time.Second} {
		r := p.Analyze(context.Background(), analysis.Target{Namespace: "agree", Canary: "api-canary", Stable: "api",
			Window: window, Since: since, Now: now, MinRequests: 1})
		counts := ask("sum by (deployment, classification) (" + grow("response_total", window) + ")")
		p99 := ask("histogram_quantile(0.99, sum by (deployment, le) (" + grow("response_latency_ms_bucket", window) + "))")
		for _, d := range []struct {
			name string
			got  analysis.Numbers
		}{{"api-canary", r.Canary}, {"api", r.Stable}} {
			ok, bad := counts[d.name+"/success"], counts[d.name+"/failure"]
			want := analysis.Numbers{Requests: ok + bad, SuccessRate: 100 * ok / (ok + bad), LatencyP99Ms: p99[d.name+"/"]}
			if d.got.Requests != want.Requests || math.Abs(d.got.SuccessRate-want.SuccessRate) > 1e-9 ||
				math.Abs(d.got.LatencyP99Ms-want.LatencyP99Ms) > 1e-9*want.LatencyP99Ms || want.Requests < 20 {
				t.Errorf("window %s, %s: analysis %+v, Prometheus %+v", window, d.name, d.got, want)
			}
		}
		t.Logf("window %s: canary %+v stable %+v", window, r.Canary, r.Stable)
	}
}

// perSeriesGrowth is how a check had Prometheus count a counter's growth
// over rng until it read the instants itself: per series, now minus rng
// ago, or all of it for a series born since.
func perSeriesGrowth(selector, rng string) string {
	x := selector
	return fmt.Sprintf("(clamp_min(%s - %s offset %s, 0) or (%s unless %s offset %s))", x, x, rng, x, x, rng)
}
