// Package analysis judges a canary against its stable twin from the Linkerd
// proxy metrics in Prometheus, and returns one of four verdicts with its
// numbers and a one-line reason.
//
// It must never: mistake "could not measure" for "bad canary" (Prometheus
// down, a timeout, a rejected query are Error; too little traffic is
// Inconclusive, and neither rolls anything back by itself); keep state between
// checks (everything comes from the Target, so a restarted controller gets the
// same verdict from the same data); know anything about Kubernetes objects.
//
// # What is asked of Prometheus
//
// For Target{Namespace: "shop", Canary: "cart-canary", Stable: "cart"} with a
// one-minute window, one check sends two instant queries at Target.Now, at
// once, each answering for canary and stable together (told apart by the
// deployment label): the counters summed per scrape target, now, a window ago
// and when the canary started,
//
//	sum by (namespace, deployment, pod, instance, classification) (response_total{…})
//	  or label_replace(sum by (…) (response_total{…} offset 60s), "canaryd_offset", "60s", "", "")
//	  or label_replace(sum by (…) (response_total{…} offset <since>s), "canaryd_offset", "<since>s", "", "")
//
// and the same for response_latency_ms_bucket by le. canaryd subtracts them
// itself: per target, what it holds now minus what it held then — 0 if it
// fell (a restarted proxy), all of it if the target had nothing then (a pod
// born since). That is the exact count of requests, where increase() would
// extrapolate each series on its own (see queries.go), and it costs
// Prometheus a third to a half less CPU than having it subtract per series. From the window's
// growth come the volume, the success rate and the p99 (interpolated in the
// buckets as histogram_quantile does); from the growth since the canary
// started, the judge's counts.
//
// {…} is namespace="shop",deployment=~"cart|cart-canary",direction="inbound",
// target_port!="4191" (the admin port: Prometheus scrapes and kubelet probes
// are not traffic). <since> is Now − Target.Since in whole seconds, rounded
// up. No range is shorter than two scrape intervals (Config.ScrapeInterval).
// Label values are written as Go-quoted strings, which PromQL unquotes with
// the same rules, so a hostile name stays a string. Custom checks add one
// query each.
//
// # Verdicts, in the order they are decided
//
//  1. Fail, Final: the sequential test below says the canary is worse than
//     stable. The controller rolls back at once. This is the one rule that can
//     act below MinRequests: four failures in the first twenty requests against
//     a 0.1 % stable are evidence enough.
//  2. Inconclusive: fewer than MinRequests canary requests in the window.
//  3. Fail: success rate < MinSuccessRate, p99 > MaxLatencyP99, or a custom
//     check out of its bounds, all over the window.
//  4. Error: a query failed, or data is missing where the traffic says it
//     must exist (requests but no latency series; a custom check with no
//     result).
//  5. Pass.
//
// # The judge: Wald's sequential probability ratio test, one-sided
//
// Each request of the canary since Target.Since is a coin toss: bad (a failed
// response; or, for latency, a response slower than a bound) with unknown
// probability p. Stable gives the reference share s. The question is
//
//	H0: p ≤ s + tolerance          (not worse: keep going)
//	H1: p ≥ s + tolerance + effect (worse: roll back)
//
// With p0 = s + tolerance and p1 = p0 + effect, every request adds to the log
// likelihood ratio
//
//	bad:  ln(p1/p0)            > 0
//	good: ln((1−p1)/(1−p0))    < 0
//
// so after n requests of which f were bad, LLR = f·ln(p1/p0) + (n−f)·ln((1−p1)/(1−p0)).
// The canary is worse when LLR ≥ ln(1/α) and not worse when LLR ≤ ln(β).
//
// Why those boundaries hold however often the controller looks: while
// p ≤ p0, exp(LLR) is a non-negative supermartingale starting at 1, and by
// Ville's inequality it ever reaches 1/α with probability at most α, at any
// stopping time, with any number of looks, with the looks at any moments.
// Likewise exp(−LLR) under p = p1 reaches 1/β with probability at most β.
// The controller checks once per interval and never stops the test when it
// says "not worse" (the counts keep accumulating from Since), and the bound on
// false rollbacks is still α for the whole rollout. Wald's classical
// boundaries ln((1−β)/α) and ln(β/(1−α)) differ from these by 0.01 at α =
// β = 1 %; these are the ones that stay valid under continuous monitoring.
//
// Stable's share s is itself measured, with a standard error
// se = √(s̃(1−s̃)/(N+1)), s̃ = (F+½)/(N+1) for F bad of N stable requests. The
// judge gives stable one standard error against the canary each way: "worse"
// is tested with s + se, "not worse" with s − se. Without this, measured error
// rates drifted past the bounds (1.15 % false rollbacks with equal traffic,
// 1.1 % misses at α = β = 1 %); with it they are 0.35–0.5 % and 0.89–0.94 %
// (judge_test.go simulates 2,000–20,000 rollouts per case with fixed seeds).
//
// # Worked numbers (the defaults: α = β = 1 %, tolerance 0.5, effect 2 points)
//
// Boundaries: ln(1/0.01) = 4.61 and ln(0.01) = −4.61.
//
// Stable served 9,000 requests with 9 failures: s = 0.1 %, se = 0.034 points.
// Worse side: p0 = 0.1 + 0.034 + 0.5 = 0.634 %, p1 = 2.634 %; a failure adds
// ln(2.634/0.634) = 1.424, a success ln(0.97366/0.99366) = −0.0203.
//
//   - 3 failures can never reject: 3 × 1.424 = 4.27 < 4.61.
//   - 4 failures reject if they come within the first 57 requests:
//     4 × 1.424 − 53 × 0.0203 = 4.62 ≥ 4.61.
//   - 5 failures reject within the first 128 requests.
//
// A canary failing 5 % of requests gains 0.05 × 1.424 − 0.95 × 0.0203 = 0.052
// per request on average: Wald's expected sample number is 4.61 / 0.052 ≈ 89
// requests, plus the overshoot of the last step. Simulated (one look per
// request, 3,000 rollouts): mean 108, median 95, p90 191 requests; with a look
// every 20 requests, mean 121. At 20 requests a second reaching the canary
// that is about 5 s; at 10 % weight of 20 rps, about 55 s.
//
// Not-worse side: p0 = 0.1 − 0.034 + 0.5 = 0.566 %, a success adds −0.0203,
// so 227 clean canary requests, or 302 with one failure, say "not worse"
// (simulated for a canary as good as stable: mean 247). Steps advance on
// the interval and the thresholds; promotion also waits for "not worse"
// (rollout/walk.go), the one step that cannot be taken back.
//
// Truncation: when stable's measured share comes out low, the not-worse null
// s − se + tolerance can sit barely above a healthy canary's true share, and
// the test then drifts to its boundary very slowly. Past twice its expected
// sample size at that null, the judge also accepts LLR ≤ ln β against the
// worse side's baseline s + se; a canary at that side's alternative gets
// there with probability at most β as well. For a 1 % bad share on both sides
// (latency against stable's p99 bucket) at 50 % weight, 4,000 simulated good
// canaries were all decided within 1,500 requests (19 were not, without
// truncation); misses of a 2.6 %-errors canary stay at 0.89–0.94 % (β = 1 %).
//
// Latency uses the same test with "bad" meaning slower than a bound: the
// smallest bucket bound under which 99 % of stable's requests fall (so
// stable's slow share is at most 1 % by construction), or, while stable has
// fewer than MinRequests requests, the first bucket at or above MaxLatencyP99
// against a fixed 1 % (what "p99 ≤ max" means). A canary three times slower
// than stable puts most of its requests above stable's p99 bucket and is
// rejected within a few dozen requests.
//
// # Custom checks
//
// Named PromQL templates (text/template, variables namespace, deployment,
// canary, stable, interval) with a min and/or max, loaded by LoadChecks and
// selected by Target.Checks; see Check. Loading checks syntax, renders with
// sample values and checks brackets and strings; Prom.Validate asks
// Prometheus to run each one.
package analysis
