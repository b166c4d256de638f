package analysis

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// JudgeConfig tunes the canary-vs-stable sequential test (see the package doc
// for the maths). Zero fields take the defaults in brackets.
type JudgeConfig struct {
	// Alpha bounds the chance of rolling back a canary that is no worse than
	// stable + Tolerance, over the whole rollout however often it is checked [0.01].
	Alpha float64
	// Beta bounds the chance of calling "not worse" a canary that is worse
	// by Tolerance + Effect or more [0.01].
	Beta float64
	// Tolerance is how many percentage points the canary's bad share (errors,
	// or responses slower than the latency bound) may exceed stable's and
	// still count as "not worse" [0.5].
	Tolerance float64
	// Effect is how many points beyond Tolerance the test is built to catch
	// quickly: it sets the alternative hypothesis. Smaller catches subtler
	// regressions but needs more requests for every decision [2].
	Effect float64
	// Disabled turns the test off: only the thresholds judge.
	Disabled bool
}

// Judge defaults.
const (
	DefaultAlpha     = 0.01
	DefaultBeta      = 0.01
	DefaultTolerance = 0.5 // percentage points
	DefaultEffect    = 2.0 // percentage points
)

// minP0 keeps log(p1/p0) finite when stable shows no bad outcome and the
// tolerance is zero.
const minP0 = 1e-4

func (j JudgeConfig) withDefaults() JudgeConfig {
	if j.Alpha == 0 {
		j.Alpha = DefaultAlpha
	}
	if j.Beta == 0 {
		j.Beta = DefaultBeta
	}
	if j.Tolerance == 0 {
		j.Tolerance = DefaultTolerance
	}
	if j.Effect == 0 {
		j.Effect = DefaultEffect
	}
	return j
}

func (j JudgeConfig) validate() error {
	var errs []error
	if !(j.Alpha > 0 && j.Alpha < 0.5) {
		errs = append(errs, fmt.Errorf("judge alpha %v: want 0 < alpha < 0.5", j.Alpha))
	}
	if !(j.Beta > 0 && j.Beta < 0.5) {
		errs = append(errs, fmt.Errorf("judge beta %v: want 0 < beta < 0.5", j.Beta))
	}
	if !(j.Tolerance >= 0 && j.Tolerance < 50) {
		errs = append(errs, fmt.Errorf("judge tolerance %v: want 0 ≤ points < 50", j.Tolerance))
	}
	if !(j.Effect > 0 && j.Effect < 50) {
		errs = append(errs, fmt.Errorf("judge effect %v: want 0 < points < 50", j.Effect))
	}
	return errors.Join(errs...)
}

// judge runs one-sided Wald tests with anytime-valid boundaries.
type judge struct {
	tol, effect  float64 // as shares, not points
	upper, lower float64
}

func newJudge(cfg JudgeConfig) judge {
	return judge{
		tol:    cfg.Tolerance / 100,
		effect: cfg.Effect / 100,
		// Ville's inequality: under p ≤ p0 the likelihood ratio is a
		// non-negative supermartingale, so it ever reaches 1/α with
		// probability ≤ α, whenever and however often it is looked at.
		upper: math.Log(1 / cfg.Alpha),
		// and under p = p1 its inverse ever reaches 1/β with probability ≤ β.
		lower: math.Log(cfg.Beta),
	}
}

// stableMargin is how many standard errors of stable's estimated share the
// test gives away each way: to roll back, the canary must look worse even
// against stable one standard error worse than measured; to be called not
// worse, it must look fine even against stable one standard error better.
// Without it, stable's own sampling noise pushes both error rates a little
// past α and β (measured: 1.15 % false rollbacks at equal traffic, 1.1 %
// misses; with it 0.2 % and 0.55 %), at the price of ~12 % more requests
// before a 5 %-errors canary is rejected (see judge_test.go).
const stableMargin = 1.0

// compare tests the canary's bad share against stable's plus the tolerance.
// Stable needs minStable requests for its share to be a baseline at all.
func (j judge) compare(metric string, canary, stable counts, minStable float64) Sequential {
	canary, stable = roundCounts(canary), roundCounts(stable)
	if stable.total < minStable || stable.total <= 0 {
		s := Sequential{Metric: metric, Decision: DecisionSkipped,
			CanaryTotal: canary.total, CanaryBad: canary.bad, StableTotal: stable.total, StableBad: stable.bad}
		s.Note = fmt.Sprintf("stable had %.0f requests, fewer than %.0f", stable.total, minStable)
		return s
	}
	share := stable.bad / stable.total
	// the standard error uses (bad+½)/(total+1) so that a stable with no
	// failures yet still has some uncertainty
	smooth := (stable.bad + 0.5) / (stable.total + 1)
	se := math.Sqrt(smooth * (1 - smooth) / (stable.total + 1))
	s := j.against(metric, canary, share+stableMargin*se, math.Max(0, share-stableMargin*se))
	s.StableTotal, s.StableBad = stable.total, stable.bad
	return s
}

// against tests the canary's bad share against a baseline share plus the
// tolerance: worse is judged against baseHigh, not-worse against baseLow.
func (j judge) against(metric string, canary counts, baseHigh, baseLow float64) Sequential {
	canary = roundCounts(canary)
	p0 := math.Max(baseHigh+j.tol, minP0)
	p1 := p0 + j.effect
	q0 := math.Max(baseLow+j.tol, minP0)
	q1 := q0 + j.effect
	s := Sequential{Metric: metric, CanaryTotal: canary.total, CanaryBad: canary.bad,
		P0: p0, P1: p1, NotWorseP0: q0, Upper: j.upper, Lower: j.lower}
	if p1 >= 1 {
		s.Decision = DecisionSkipped
		s.Note = fmt.Sprintf("baseline %s leaves no room for a worse canary", pct(100*baseHigh))
		return s
	}
	s.LogLR, s.NotWorseLogLR = logLR(canary, p0, p1), logLR(canary, q0, q1)
	switch {
	case canary.total <= 0:
		s.Decision = DecisionUndecided
	case s.LogLR >= j.upper:
		s.Decision = DecisionWorse
	case s.NotWorseLogLR <= j.lower:
		s.Decision = DecisionNotWorse
	case canary.total >= truncateAt(q0, q1, j.lower) && s.LogLR <= j.lower:
		// Truncation: a canary as good as stable can sit just above q0 when
		// stable's measured share came out low, and the not-worse test then
		// drifts to its boundary very slowly (a healthy canary held for
		// minutes at its last step). Past twice the test's expected sample
		// size, the same evidence against the baseline stable + 1 SE is
		// enough; by Ville's inequality a canary at that baseline's
		// alternative reaches it with probability at most β too.
		s.Decision = DecisionNotWorse
		s.Note = fmt.Sprintf("not worse than stable + 1 SE after %.0f requests (truncated at %.0f)", canary.total, truncateAt(q0, q1, j.lower))
	default:
		s.Decision = DecisionUndecided
	}
	return s
}

// truncateAt is twice Wald's expected sample size of the not-worse test
// (q0 against q1, boundary lower = ln β) for a canary exactly at q0: the
// number of canary requests after which the judge accepts the weaker
// evidence (see against).
func truncateAt(q0, q1, lower float64) float64 {
	drift := q0*math.Log(q1/q0) + (1-q0)*math.Log((1-q1)/(1-q0)) // < 0
	if !(drift < 0) {
		return math.Inf(1)
	}
	return 2 * lower / drift
}

// logLR is the log likelihood ratio of bad share p1 against p0 for c: each
// bad outcome adds log(p1/p0) > 0, each good one log((1-p1)/(1-p0)) < 0.
func logLR(c counts, p0, p1 float64) float64 {
	return c.bad*math.Log(p1/p0) + (c.total-c.bad)*math.Log((1-p1)/(1-p0))
}

func roundCounts(c counts) counts {
	c.total = math.Max(0, math.Round(c.total))
	c.bad = math.Min(c.total, math.Max(0, math.Round(c.bad)))
	return c
}

// latency turns latency into the same bad/good test: a response slower than
// a bound is bad. The bound is stable's p99 bucket when stable has enough
// requests, so stable's slow share is at most 1 % by construction and a
// canary slower than stable shows a larger share; otherwise it is the first
// bucket at or above maxP99, against a fixed 1 % (what "p99 ≤ max" means).
func (j judge) latency(canary, stable histogram, maxP99 time.Duration, minStable float64) Sequential {
	if stable.total() >= minStable && stable.total() > 0 {
		if bound, ok := stable.quantileBound(0.99); ok {
			s := j.compare("latency",
				counts{total: canary.total(), bad: canary.slowerThan(bound)},
				counts{total: stable.total(), bad: stable.slowerThan(bound)}, minStable)
			s.BoundMs = bound
			return s
		}
	}
	maxMs := float64(maxP99) / float64(time.Millisecond)
	bound, ok := canary.boundAtLeast(maxMs)
	if !ok || maxP99 <= 0 {
		return Sequential{Metric: "latency", Decision: DecisionSkipped,
			CanaryTotal: canary.total(), StableTotal: stable.total(),
			Note: "no latency bucket to compare against"}
	}
	s := j.against("latency", counts{total: canary.total(), bad: canary.slowerThan(bound)}, 0.01, 0.01)
	s.BoundMs = bound
	s.StableTotal = stable.total()
	s.Note = fmt.Sprintf("stable had too few requests; canary compared with 1%% slower than %s", ms(bound))
	return s
}
