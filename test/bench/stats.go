package bench

import (
	"math"
	"slices"
)

// Quantile is the q-quantile of xs by the nearest-rank method: the smallest
// value with at least q·n values at or below it. p99 of 100 values is the
// 99th smallest; of 30 values, the largest. NaN for no values.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median is the middle value (the mean of the two middle ones for an even
// count): what every figure of the report is, over repeated runs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Fit is a least-squares line y = Intercept + Slope·x.
type Fit struct {
	Slope, Intercept, R2 float64
}

// LinearFit fits a line through the points; R2 is the share of y's variance
// the line explains (1: a perfect line).
func LinearFit(x, y []float64) Fit {
	n := float64(len(x))
	if len(x) < 2 || len(x) != len(y) {
		return Fit{Slope: math.NaN(), Intercept: math.NaN(), R2: math.NaN()}
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return Fit{Slope: math.NaN(), Intercept: math.NaN(), R2: math.NaN()}
	}
	f := Fit{Slope: (n*sxy - sx*sy) / den}
	f.Intercept = (sy - f.Slope*sx) / n
	mean := sy / n
	var ssTot, ssRes float64
	for i := range x {
		ssTot += (y[i] - mean) * (y[i] - mean)
		r := y[i] - (f.Intercept + f.Slope*x[i])
		ssRes += r * r
	}
	f.R2 = 1
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	return f
}

// Judge is the sequential test's configuration as canaryd runs it
// (analysis.JudgeConfig): α, β, and tolerance and effect in percentage points.
type Judge struct {
	Alpha, Beta, Tolerance, Effect float64
}

// SPRT is Wald's expected sample number for the judge's test of one canary.
type SPRT struct {
	P0, P1     float64 // the hypotheses the judge tests (shares)
	Drift      float64 // mean log-likelihood ratio per canary request
	AcceptProb float64 // chance the test says "not worse" first (Wald's OC)
	ESN        float64 // expected canary requests to a decision
}

// ExpectedSampleNumber is Wald's expected sample number of the judge's
// one-sided test on a canary whose true bad share is p, when stable showed
// share s over stableN requests.
//
// It follows analysis/judge.go: the worse-hypothesis p0 is stable's share
// plus one standard error plus the tolerance, p1 = p0 + effect, and the
// boundaries are ln(1/α) and ln β. Each canary request adds z = ln(p1/p0)
// when bad and ln((1−p1)/(1−p0)) when good, so the walk drifts by
// μ = p·ln(p1/p0) + (1−p)·ln((1−p1)/(1−p0)) per request, and Wald's
// identity gives E[N] = (L·ln β + (1−L)·ln(1/α)) / μ, with L the chance of
// ending at the lower boundary (Wald's operating characteristic, from the
// root h ≠ 0 of p·(p1/p0)^h + (1−p)·((1−p1)/(1−p0))^h = 1).
//
// Worked numbers at the defaults (α = β = 1 %, tolerance 0.5, effect 2),
// stable 0.1 % over 1,000 requests (se 0.12 points): p0 = 0.72 %,
// p1 = 2.72 %; a 5 %-errors canary drifts 0.05·1.33 − 0.95·0.0204 = 0.047
// per request, so E[N] ≈ 4.61 / 0.047 ≈ 98 requests, ignoring the overshoot
// of the last step (which real tests add).
func (j Judge) ExpectedSampleNumber(p, s, stableN float64) SPRT {
	smooth := (s*stableN + 0.5) / (stableN + 1)
	se := math.Sqrt(smooth * (1 - smooth) / (stableN + 1))
	p0 := math.Max(s+se+j.Tolerance/100, 1e-4)
	p1 := p0 + j.Effect/100
	up, down := math.Log(p1/p0), math.Log((1-p1)/(1-p0))
	mu := p*up + (1-p)*down
	a, b := math.Log(1/j.Alpha), math.Log(j.Beta)
	out := SPRT{P0: p0, P1: p1, Drift: mu}
	if mu == 0 || math.IsNaN(mu) {
		out.ESN, out.AcceptProb = math.Inf(1), math.NaN()
		return out
	}
	// The non-zero root h of g(h) = p·e^{h·up} + (1−p)·e^{h·down} − 1 has
	// the opposite sign of the drift; g is convex with g(0) = 0, so
	// bisection between 0 and a point where g > 0 finds it.
	g := func(h float64) float64 { return p*math.Exp(h*up) + (1-p)*math.Exp(h*down) - 1 }
	dir := -1.0
	if mu < 0 {
		dir = 1
	}
	lo, hi := 1e-9, 1.0
	for g(dir*hi) <= 0 && hi < 1e6 {
		hi *= 2
	}
	for range 200 {
		mid := (lo + hi) / 2
		if g(dir*mid) > 0 {
			hi = mid
		} else {
			lo = mid
		}
	}
	h := dir * (lo + hi) / 2
	// L = (A^h − 1) / (A^h − B^h) with A = 1/α, B = β (in exp space).
	ah, bh := math.Exp(h*a), math.Exp(h*b)
	out.AcceptProb = (ah - 1) / (ah - bh)
	out.ESN = (out.AcceptProb*b + (1-out.AcceptProb)*a) / mu
	return out
}

// ESNAtRate solves for the expected sample number when stable's own count
// grows with the canary's: at canary rate rc and stable rate rs, stable has
// seen about ESN·rs/rc requests when the decision falls. A few fixed-point
// rounds settle it.
func (j Judge) ESNAtRate(p, s, rc, rs float64) SPRT {
	r := j.ExpectedSampleNumber(p, s, 1000)
	for range 20 {
		r = j.ExpectedSampleNumber(p, s, math.Max(1, r.ESN*rs/rc))
	}
	return r
}

// ShareAbove is the share of log-normal latencies (median m, p99 p99) above
// bound: the proxy's latency model in test/meshsim.
func ShareAbove(bound, m, p99 float64) float64 {
	const z99 = 2.3263478740
	sigma := math.Log(p99/m) / z99
	return 0.5 * math.Erfc(math.Log(bound/m)/(sigma*math.Sqrt2))
}
