package analysis

import (
	"context"
	"time"
)

// Verdict is the outcome of one analysis check. There are four, not two: a
// check that could not be made (Error) or that saw too little traffic
// (Inconclusive) must never look like a bad canary.
type Verdict string

const (
	// Pass: the canary meets every threshold and is not measurably worse than stable.
	Pass Verdict = "Pass"
	// Fail: a threshold is broken, or the canary is measurably worse than stable.
	Fail Verdict = "Fail"
	// Inconclusive: too few requests to judge; the step holds.
	Inconclusive Verdict = "Inconclusive"
	// Error: the check could not be made (Prometheus unreachable, bad query,
	// no data where data was expected); the step holds and a warning is raised.
	Error Verdict = "Error"
)

// Target says what to analyse: one canary against its stable twin, over a window.
type Target struct {
	Namespace string
	// Canary and Stable are the values of the `deployment` label that
	// Linkerd-viz's scrape config puts on the proxies' series: "foo-canary" and "foo".
	Canary string
	Stable string

	// Window is the threshold window ("the last interval"): success rate and
	// p99 are computed over it.
	Window time.Duration
	// Since is when the canary started taking traffic in this rollout; the
	// sequential test accumulates success/failure counts from then on.
	Since time.Time
	// Now is the evaluation time (queries are instant queries at Now).
	Now time.Time

	MinSuccessRate float64       // percent, e.g. 99
	MaxLatencyP99  time.Duration // e.g. 500ms
	MinRequests    int           // fewer canary requests in Window → Inconclusive

	// Checks names extra custom checks from canaryd's config file.
	Checks []string
}

// Numbers are the measurements behind a verdict. NaN means "no data".
type Numbers struct {
	Requests     float64 `json:"requests"`
	SuccessRate  float64 `json:"successRate"` // percent
	LatencyP99Ms float64 `json:"p99Ms"`
}

// CheckResult is the outcome of one named custom check.
type CheckResult struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
}

// Result is a verdict with its numbers and a one-line reason fit for an
// Event message and the status annotation.
type Result struct {
	Verdict Verdict
	// Final is set on a Fail when the sequential test rejected the canary:
	// the evidence is conclusive and the controller rolls back at once,
	// without waiting for the step's interval or counting max-failures.
	Final  bool
	Reason string
	Canary Numbers
	Stable Numbers
	Checks []CheckResult
	// Judge holds the sequential tests behind the verdict, one per metric
	// ("errors", "latency"); empty when they could not be run.
	Judge []Sequential
	// NotWorse: the sequential tests have accepted the canary as not worse
	// than stable on every metric they could test (always true with the
	// judge turned off). The controller asks for it before promoting: a
	// threshold check over one window can pass on a handful of lucky
	// requests; this is evidence accumulated over the whole rollout.
	NotWorse bool
}

// Analyzer runs one check. Implementations never panic and never return a
// Go error: every failure to measure is an Error verdict with a reason.
type Analyzer interface {
	Analyze(ctx context.Context, t Target) Result
}

// ScrapeProber is an Analyzer that can also tell how many of a Deployment's
// pods Prometheus scrapes, and when it last did (Prom can): the controller
// asks before a canary's first traffic, which the analysis can only judge
// once it is scraped, and places its probes just after the canary's scrapes.
type ScrapeProber interface {
	Scraped(ctx context.Context, namespace, deployment, podTemplateHash string) (pods int, last time.Time, err error)
}

// Sequential reports one canary-vs-stable sequential test (see the package
// doc): on the share of bad outcomes (failed responses, or responses slower
// than a latency bound) accumulated from Target.Since to Target.Now.
type Sequential struct {
	// Metric is "errors" or "latency".
	Metric string `json:"metric"`
	// Decision is DecisionWorse, DecisionNotWorse, DecisionUndecided or DecisionSkipped.
	Decision string `json:"decision"`
	// CanaryTotal/CanaryBad and StableTotal/StableBad are the counts the test saw.
	CanaryTotal float64 `json:"canaryTotal"`
	CanaryBad   float64 `json:"canaryBad"`
	StableTotal float64 `json:"stableTotal"`
	StableBad   float64 `json:"stableBad"`
	// P0 is the bad share the canary may have and still pass (stable's share
	// plus the tolerance); P1 the share the test is built to catch.
	P0 float64 `json:"p0"`
	P1 float64 `json:"p1"`
	// LogLR is the log likelihood ratio of P1 against P0; the test rejects
	// the canary at or above Upper.
	LogLR float64 `json:"logLR"`
	Upper float64 `json:"upper"`
	// NotWorseP0 and NotWorseLogLR are the same with stable's share taken a
	// standard error lower; the canary is called not worse when
	// NotWorseLogLR is at or below Lower.
	NotWorseP0    float64 `json:"notWorseP0"`
	NotWorseLogLR float64 `json:"notWorseLogLR"`
	Lower         float64 `json:"lower"`
	// BoundMs is the latency bound (ms) for Metric "latency": a response
	// slower than this counts as bad.
	BoundMs float64 `json:"boundMs,omitempty"`
	// Note says why the test was skipped, when it was.
	Note string `json:"note,omitempty"`
}

// Decisions of a Sequential test.
const (
	DecisionWorse     = "worse"
	DecisionNotWorse  = "not-worse"
	DecisionUndecided = "undecided"
	DecisionSkipped   = "skipped"
)
