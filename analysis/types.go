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
}

// Analyzer runs one check. Implementations never panic and never return a
// Go error: every failure to measure is an Error verdict with a reason.
type Analyzer interface {
	Analyze(ctx context.Context, t Target) Result
}
