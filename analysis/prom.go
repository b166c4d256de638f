package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultScrapeInterval is Linkerd-viz's Prometheus scrape interval.
const DefaultScrapeInterval = 10 * time.Second

// Config configures a Prom analyzer.
type Config struct {
	Client ClientConfig
	Judge  JudgeConfig
	// Checks are the custom checks a Target may name (see LoadChecks).
	Checks []Check
	// ScrapeInterval is how often Prometheus scrapes the proxies. No query
	// range is shorter than two of them: increase() and rate() need two
	// samples, and would return nothing (a permanent Inconclusive) otherwise.
	// Zero means DefaultScrapeInterval.
	ScrapeInterval time.Duration
	// AdminPort is the proxy admin port whose inbound requests (scrapes,
	// probes) are not application traffic. Zero means DefaultAdminPort;
	// negative counts them.
	AdminPort int
	// Share lets the checks made at the same moment share their built-in
	// queries (share.go): fewer queries, for a Prometheus-compatible backend
	// that limits or bills them, but checks wait for each other's round trips.
	Share bool
}

// Prom is the Analyzer that asks Prometheus about Linkerd's proxy metrics.
// It keeps no state between checks: everything it needs is in the Target,
// so a restarted controller gets the same verdict from the same data.
type Prom struct {
	client    *promClient
	share     *sharer
	judge     judge
	judgeOn   bool
	checks    map[string]*Check
	scrape    time.Duration
	adminPort int
}

var _ Analyzer = (*Prom)(nil)

// NewPrometheus builds a Prom from cfg; it does not contact Prometheus (see Validate).
func NewPrometheus(cfg Config) (*Prom, error) {
	jc := cfg.Judge.withDefaults()
	if err := jc.validate(); err != nil {
		return nil, err
	}
	client, err := newPromClient(cfg.Client)
	if err != nil {
		return nil, err
	}
	checks := append([]Check(nil), cfg.Checks...)
	if err := compileChecks(checks); err != nil {
		return nil, err
	}
	p := &Prom{client: client, judge: newJudge(jc), judgeOn: !jc.Disabled,
		checks: map[string]*Check{}, scrape: cfg.ScrapeInterval, adminPort: cfg.AdminPort}
	for i := range checks {
		p.checks[checks[i].Name] = &checks[i]
	}
	if p.scrape <= 0 {
		p.scrape = DefaultScrapeInterval
	}
	if p.adminPort == 0 {
		p.adminPort = DefaultAdminPort
	}
	p.share = &sharer{query: client.query, adminPort: p.adminPort, solo: !cfg.Share}
	return p, nil
}

// Validate dry-runs the built-in queries and every custom check against
// Prometheus, with sample label values, so that a query Prometheus rejects
// is found at startup rather than at the first rollout. Empty results are fine.
func (p *Prom) Validate(ctx context.Context) error {
	t := sampleTarget()
	b := p.builder(t)
	var errs []error
	for l := range lanes {
		name, q := l.render(b, ranges{window: t.Window, since: 2 * t.Window})
		if _, err := p.client.query(ctx, "built-in: "+name, q, time.Time{}); err != nil {
			errs = append(errs, err)
		}
	}
	for name, c := range p.checks {
		q, err := c.render(t)
		if err == nil {
			_, err = p.client.query(ctx, "custom check "+name, q, time.Time{})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("custom check %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Analyze implements Analyzer.
func (p *Prom) Analyze(ctx context.Context, t Target) Result {
	if err := checkTarget(t); err != nil {
		return errorResult(err.Error())
	}
	for _, name := range t.Checks {
		if p.checks[name] == nil {
			return errorResult(fmt.Sprintf("unknown custom check %q", name))
		}
	}
	m, err := p.measure(ctx, t)
	if err != nil {
		return errorResult("prometheus: " + err.Error())
	}
	return p.decide(t, m)
}

func checkTarget(t Target) error {
	switch {
	case t.Namespace == "" || t.Canary == "" || t.Stable == "":
		return errors.New("target needs a namespace, a canary and a stable deployment")
	case t.Canary == t.Stable:
		return fmt.Errorf("canary and stable are both %q", t.Canary)
	case t.Window <= 0:
		return fmt.Errorf("analysis window %s is not positive", t.Window)
	case t.Now.IsZero():
		return errors.New("target has no evaluation time")
	}
	return nil
}

func errorResult(reason string) Result {
	return Result{Verdict: Error, Reason: reason, Canary: noNumbers(), Stable: noNumbers()}
}

func noNumbers() Numbers {
	return Numbers{Requests: math.NaN(), SuccessRate: math.NaN(), LatencyP99Ms: math.NaN()}
}

func (p *Prom) builder(t Target) queryBuilder {
	return newBuilder(p.adminPort, member{t.Namespace, t.Canary, t.Stable})
}

// ranges are the two windows of a check evaluated at t.Now, clamped to two
// scrape intervals.
func (p *Prom) ranges(t Target) (window, since time.Duration) {
	return p.window(t), p.sinceAt(t, t.Now)
}

// window is the threshold window's range.
func (p *Prom) window(t Target) time.Duration {
	return wholeSeconds(max(t.Window, 2*p.scrape))
}

// sinceAt is the range from the canary's start to an evaluation at `at`
// (the window when the start is unknown).
func (p *Prom) sinceAt(t Target, at time.Time) time.Duration {
	if t.Since.IsZero() || !t.Since.Before(at) {
		return p.window(t)
	}
	return wholeSeconds(max(at.Sub(t.Since), 2*p.scrape))
}

// wholeSeconds rounds d up to a whole second, as promRange does.
func wholeSeconds(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// measurement is everything one check learnt from Prometheus.
type measurement struct {
	window, since          time.Duration
	canary, stable         Numbers
	cumCanary, cumStable   counts
	histCanary, histStable histogram
	checks                 []checkValue
}

type checkValue struct {
	name  string
	value float64
	err   error
}

// task is one built-in question and what to do with its answer.
type task struct {
	lane  lane
	apply func(rows model.Vector, used ranges)
}

// measure asks the built-in questions (shared with the checks made at the
// same moment, see share.go) and runs the target's custom checks, all at
// once. A failed built-in query fails the measurement; a failed custom check
// is recorded against that check only.
func (p *Prom) measure(ctx context.Context, t Target) (measurement, error) {
	window, since := p.ranges(t)
	m := measurement{window: window, since: since, canary: noNumbers(), stable: noNumbers()}
	rng := func(at time.Time) ranges {
		if !p.judgeOn {
			return ranges{window: window}
		}
		return ranges{window: window, since: p.sinceAt(t, at)}
	}
	tasks := []task{
		{laneCounts, func(rows model.Vector, used ranges) {
			c, st := growth(rows, "classification", promRange(used.window)).countsOf(t.Canary, t.Stable)
			m.canary.Requests, m.canary.SuccessRate = math.Round(c.total), successRate(c)
			m.stable.Requests, m.stable.SuccessRate = math.Round(st.total), successRate(st)
			if used.since > 0 {
				m.cumCanary, m.cumStable = growth(rows, "classification", promRange(used.since)).countsOf(t.Canary, t.Stable)
				m.since = used.since
			}
		}},
		{laneBuckets, func(rows model.Vector, used ranges) {
			c, st := growth(rows, "le", promRange(used.window)).histogramsOf(t.Canary, t.Stable)
			m.canary.LatencyP99Ms, m.stable.LatencyP99Ms = c.quantile(0.99), st.quantile(0.99)
			if used.since > 0 {
				m.histCanary, m.histStable = growth(rows, "le", promRange(used.since)).histogramsOf(t.Canary, t.Stable)
			}
		}},
	}
	m.checks = make([]checkValue, len(t.Checks))
	asks := make([]*ask, len(tasks))
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, tk := range tasks {
		asks[i] = &ask{member: member{t.Namespace, t.Canary, t.Stable}, now: t.Now, rng: rng}
		wg.Go(func() { errs[i] = p.share.ask(ctx, tk.lane, asks[i]) })
	}
	for i, name := range t.Checks {
		wg.Go(func() { m.checks[i] = p.runCheck(ctx, name, t) })
	}
	wg.Wait()
	for i, tk := range tasks {
		if errs[i] == nil {
			tk.apply(asks[i].rows, asks[i].used)
		}
	}
	return m, firstOf(errs)
}

// firstOf keeps the reason to one line: the first error, and how many more.
func firstOf(errs []error) error {
	var first error
	more := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case first == nil:
			first = err
		default:
			more++
		}
	}
	if more > 0 {
		return fmt.Errorf("%w (and %d more queries failed)", first, more)
	}
	return first
}

// runCheck evaluates one custom check; its value must be a single number.
func (p *Prom) runCheck(ctx context.Context, name string, t Target) checkValue {
	cv := checkValue{name: name, value: math.NaN()}
	c := p.checks[name]
	win, _ := p.ranges(t)
	t.Window = win
	q, err := c.render(t)
	if err != nil {
		cv.err = err
		return cv
	}
	v, err := p.client.query(ctx, "custom check "+name, q, t.Now)
	if err != nil {
		cv.err = err
		return cv
	}
	cv.value, cv.err = single(v)
	return cv
}

// single extracts the one number a custom check must return.
func single(v model.Value) (float64, error) {
	switch x := v.(type) {
	case *model.Scalar:
		return float64(x.Value), nil
	case model.Vector:
		if len(x) == 1 {
			return float64(x[0].Value), nil
		}
		if len(x) == 0 {
			return math.NaN(), errors.New("no data (add `or vector(0)` if none means zero)")
		}
		return math.NaN(), fmt.Errorf("%d series, want one (aggregate with sum or max)", len(x))
	}
	return math.NaN(), fmt.Errorf("a %s, want a scalar or a one-element vector", v.Type())
}

// successRate in percent, NaN without requests.
func successRate(c counts) float64 {
	if c.total <= 0 {
		return math.NaN()
	}
	return 100 * (c.total - c.bad) / c.total
}
