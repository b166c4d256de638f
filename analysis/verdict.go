package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// decide turns a measurement into a verdict. It is pure; the order of the
// rules is the policy:
//
//  1. the sequential test says the canary is worse than stable → Fail, Final;
//  2. too few canary requests in the window → Inconclusive (never a failure);
//  3. thresholds and custom checks out of bounds → Fail;
//  4. data missing where the traffic says it must exist, or a custom check
//     that could not be evaluated → Error;
//  5. otherwise Pass.
func (p *Prom) decide(t Target, m measurement) Result {
	r := Result{Canary: m.canary, Stable: m.stable}
	if p.judgeOn {
		minStable := float64(max(t.MinRequests, 1))
		r.Judge = []Sequential{
			p.judge.compare("errors", m.cumCanary, m.cumStable, minStable),
			p.judge.latency(m.histCanary, m.histStable, t.MaxLatencyP99, minStable),
		}
		tested := 0
		r.NotWorse = true
		for _, s := range r.Judge {
			if s.Decision == DecisionWorse {
				r.Verdict, r.Final, r.NotWorse = Fail, true, false
				r.Reason = worseReason(s, m.since)
				return r
			}
			if s.Decision != DecisionSkipped {
				tested++
				r.NotWorse = r.NotWorse && s.Decision == DecisionNotWorse
			}
		}
		r.NotWorse = r.NotWorse && tested > 0
	} else {
		r.NotWorse = true
	}
	window := promDuration(m.window)
	need := float64(max(t.MinRequests, 1))
	if !(m.canary.Requests >= need) {
		r.Verdict = Inconclusive
		r.Reason = fmt.Sprintf("%s canary requests over %s, fewer than the %d needed to judge",
			count(m.canary.Requests), window, max(t.MinRequests, 1))
		if !(m.stable.Requests > 0) {
			r.Reason += "; stable had none either (is Prometheus scraping the Linkerd proxies?)"
		}
		return r
	}
	var fails, errs []string
	volume := fmt.Sprintf("over %s (%s requests)", window, count(m.canary.Requests))
	if sr := m.canary.SuccessRate; t.MinSuccessRate > 0 && sr < t.MinSuccessRate {
		// Below the threshold on this window's sample; broken only if it is
		// below it with confidence, so that one unlucky failure among a few
		// dozen requests does not count against a healthy canary.
		if hi := successUpperBound(sr/100, m.canary.Requests); hi < t.MinSuccessRate/100 {
			fails = append(fails, fmt.Sprintf("success rate %s < %s %s (at most %s with 95%% confidence)",
				pct(sr), pct(t.MinSuccessRate), volume, pct(100*hi)))
		}
	}
	maxMs := float64(t.MaxLatencyP99) / float64(time.Millisecond)
	switch p99 := m.canary.LatencyP99Ms; {
	case t.MaxLatencyP99 <= 0:
	case math.IsNaN(p99):
		errs = append(errs, fmt.Sprintf("no canary p99 latency %s", volume))
	case p99 > maxMs:
		fails = append(fails, fmt.Sprintf("p99 %s > %s %s", ms(p99), ms(maxMs), volume))
	}
	r.Checks = make([]CheckResult, 0, len(m.checks))
	for _, cv := range m.checks {
		cr := p.checkResult(cv)
		r.Checks = append(r.Checks, cr)
		switch cr.Verdict {
		case Fail:
			fails = append(fails, cr.Reason)
		case Error:
			errs = append(errs, cr.Reason)
		}
	}
	switch {
	case len(fails) > 0:
		r.Verdict, r.Reason = Fail, strings.Join(fails, "; ")
	case len(errs) > 0:
		r.Verdict, r.Reason = Error, strings.Join(errs, "; ")
	default:
		r.Verdict, r.Reason = Pass, passReason(t, m, r.Judge)
	}
	return r
}

func (p *Prom) checkResult(cv checkValue) CheckResult {
	cr := CheckResult{Name: cv.name, Value: cv.value}
	if cv.err != nil {
		cr.Verdict, cr.Reason = Error, fmt.Sprintf("custom check %q: %v", cv.name, cv.err)
		return cr
	}
	cr.Verdict, cr.Reason = p.checks[cv.name].judge(cv.value)
	return cr
}

func passReason(t Target, m measurement, judged []Sequential) string {
	var parts []string
	if !math.IsNaN(m.canary.SuccessRate) {
		parts = append(parts, "success rate "+pct(m.canary.SuccessRate))
	}
	if !math.IsNaN(m.canary.LatencyP99Ms) {
		parts = append(parts, "p99 "+ms(m.canary.LatencyP99Ms))
	}
	s := fmt.Sprintf("%s over %s (%s requests)", strings.Join(parts, ", "), promDuration(m.window), count(m.canary.Requests))
	if len(t.Checks) > 0 {
		s += fmt.Sprintf(", %d custom checks within bounds", len(t.Checks))
	}
	var notWorse []string
	for _, j := range judged {
		if j.Decision == DecisionNotWorse {
			notWorse = append(notWorse, j.Metric)
		}
	}
	if len(notWorse) > 0 {
		s += "; not worse than stable in " + strings.Join(notWorse, " and ")
	}
	return s
}

// worseReason: "canary worse than stable: 9 of 96 requests failed (9.4%) vs
// stable 0.1% since 2m; log-LR 5.1 ≥ 4.6".
func worseReason(s Sequential, since time.Duration) string {
	what := "failed"
	if s.Metric == "latency" {
		what = "slower than " + ms(s.BoundMs)
	}
	base := "stable " + pct(100*s.StableBad/s.StableTotal)
	if s.StableTotal <= 0 || s.Note != "" {
		base = "the allowed 1%"
	}
	return fmt.Sprintf("canary worse than stable: %s of %s requests %s (%s) vs %s since %s; log-LR %.1f ≥ %.1f",
		count(s.CanaryBad), count(s.CanaryTotal), what, pct(100*s.CanaryBad/s.CanaryTotal), base,
		promDuration(since), s.LogLR, s.Upper)
}

// pct prints a percentage with at most two decimals: 94.8%, 99%, 99.95%.
func pct(v float64) string { return num(v) + "%" }

// ms prints milliseconds: 742ms, 12.5ms.
func ms(v float64) string { return num(v) + "ms" }

// num prints v with at most two decimals and no trailing zeros.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// count prints a request count as a whole number.
func count(v float64) string {
	if math.IsNaN(v) {
		return "0"
	}
	return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
}

// MarshalJSON writes NaN ("no data") as null: encoding/json rejects NaN.
func (n Numbers) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Requests     *float64 `json:"requests"`
		SuccessRate  *float64 `json:"successRate"`
		LatencyP99Ms *float64 `json:"p99Ms"`
	}{finite(n.Requests), finite(n.SuccessRate), finite(n.LatencyP99Ms)})
}

// UnmarshalJSON reads null (or an absent field) back as NaN.
func (n *Numbers) UnmarshalJSON(b []byte) error {
	var raw struct {
		Requests     *float64 `json:"requests"`
		SuccessRate  *float64 `json:"successRate"`
		LatencyP99Ms *float64 `json:"p99Ms"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	n.Requests, n.SuccessRate, n.LatencyP99Ms = orNaN(raw.Requests), orNaN(raw.SuccessRate), orNaN(raw.LatencyP99Ms)
	return nil
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// MarshalJSON writes a NaN value (the check could not be evaluated) as null.
func (c CheckResult) MarshalJSON() ([]byte, error) {
	type plain CheckResult
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value"`
	}{plain(c), finite(c.Value)})
}

// successUpperBound is the one-sided 95 % Wilson score upper bound of a
// success share p observed over n requests. It is what the success rate could
// still be, given the sample: with 39 of 40 requests successful (97.5 %) it is
// 99.4 %, so a 99 % threshold is not shown broken; with 38 of 40 (95 %) it is
// 98.3 %, and the threshold is broken. With thousands of requests it tends to p.
func successUpperBound(p, n float64) float64 {
	if !(n > 0) || math.IsNaN(p) {
		return 1
	}
	const z = 1.6449 // one-sided 95 %
	z2 := z * z
	center := (p + z2/(2*n)) / (1 + z2/n)
	margin := z * math.Sqrt(p*(1-p)/n+z2/(4*n*n)) / (1 + z2/n)
	return math.Min(1, center+margin)
}
