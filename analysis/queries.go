package analysis

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultAdminPort is the Linkerd proxy's admin port. Prometheus scrapes and
// kubelet probes on it are counted by the proxy as inbound requests; they are
// not the application's traffic and would make an idle canary look busy
// (two pods scraped every 10 s are 12 "requests" a minute), so the built-in
// queries leave them out.
const DefaultAdminPort = 4191

// quote renders s as a PromQL double-quoted string. PromQL unquotes strings
// with Go's rules, so strconv.Quote escapes every byte that could end the
// literal: a hostile deployment name cannot inject PromQL.
func quote(s string) string { return strconv.Quote(s) }

// escape is quote without the surrounding quotes, for values that a custom
// template author places inside "…" themselves.
func escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// promRange renders a duration as a PromQL range in whole seconds, rounding
// up so that the range never starts after the instant it is meant to cover.
func promRange(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(math.Ceil(d.Seconds())))
}

// promDuration renders d the way a person writes it in PromQL ("1m", "1m30s").
func promDuration(d time.Duration) string { return model.Duration(d).String() }

// queryBuilder writes the built-in Linkerd queries for one or more targets
// at once (checks made at the same moment share their queries, see share.go).
type queryBuilder struct {
	namespaces, names []string // sorted, unique
	adminPort         int      // <= 0: keep admin-port traffic
}

// member is what a query needs of one Target: where its two Deployments are.
type member struct{ namespace, canary, stable string }

func newBuilder(adminPort int, ms ...member) queryBuilder {
	b := queryBuilder{adminPort: adminPort}
	for _, m := range ms {
		b.namespaces = append(b.namespaces, m.namespace)
		b.names = append(b.names, m.canary, m.stable)
	}
	slices.Sort(b.namespaces)
	slices.Sort(b.names)
	b.namespaces, b.names = slices.Compact(b.namespaces), slices.Compact(b.names)
	return b
}

// selector is the label matcher for the canaries' and stables' inbound
// traffic: one series lookup for all of them, where a matcher each
// multiplied every query's lookups (Prometheus's query load grows with the
// rollouts checked at once). The names are matched literally
// (regexp.QuoteMeta; Prometheus anchors the expression at both ends). Several
// namespaces select every listed name in each of them: a few series more
// than needed when names repeat across namespaces, which the reader of the
// answer drops (member.pick), for one lookup instead of one per namespace.
func (b queryBuilder) selector() string {
	ns := "namespace=" + quote(strings.Join(b.namespaces, ""))
	if len(b.namespaces) > 1 {
		ns = "namespace=~" + quote(alternatives(b.namespaces))
	}
	sel := fmt.Sprintf(`%s,deployment=~%s,direction="inbound"`, ns, quote(alternatives(b.names)))
	if b.adminPort > 0 {
		sel += fmt.Sprintf(`,target_port!="%d"`, b.adminPort)
	}
	return sel
}

// alternatives is a regular expression matching exactly the given strings.
func alternatives(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = regexp.QuoteMeta(s)
	}
	return strings.Join(q, "|")
}

// bothGrowth is how much a counter of canary and stable grew over rng,
// counted exactly rather than extrapolated: per series, its value now minus
// its value rng ago, and the whole value of a series born since (a new
// pod's counters start at 0).
//
// increase() extrapolates each series to the window's edges on its own. For
// a canary whose series start inside the window (always, early in a
// rollout) the bucket series of one histogram are stretched by different
// factors — measured: le="30" ×1.52 and le="+Inf" ×1.82 on the same pod —
// which invented 17 "slow" requests out of 79 and rolled back good
// canaries 2 times in 30. The sequential test's error rates assume true
// counts; these are.
func (b queryBuilder) bothGrowth(metric, rng string) string {
	x := fmt.Sprintf("%s{%s}", metric, b.selector())
	return fmt.Sprintf("(clamp_min(%s - %s offset %s, 0) or (%s unless %s offset %s))", x, x, rng, x, x, rng)
}

// counts: responses by deployment and classification over rng.
func (b queryBuilder) counts(rng string) string {
	return fmt.Sprintf("sum by (namespace, deployment, classification) (%s)", b.bothGrowth("response_total", rng))
}

// p99: 99th percentile latency in ms by deployment over rng (a quantile of
// counts is the quantile of rates: it does not depend on their scale).
func (b queryBuilder) p99(rng string) string {
	return fmt.Sprintf("histogram_quantile(0.99, sum by (namespace, deployment, le) (%s))", b.bothGrowth("response_latency_ms_bucket", rng))
}

// buckets: cumulative latency bucket counts by deployment and le over rng.
func (b queryBuilder) buckets(rng string) string {
	return fmt.Sprintf("sum by (namespace, deployment, le) (%s)", b.bothGrowth("response_latency_ms_bucket", rng))
}

// outcome counts of one deployment.
type counts struct{ total, bad float64 }

// splitCounts reads a `sum by (deployment, classification)` vector into
// canary and stable counts; "bad" is classification="failure".
func splitCounts(v model.Value, canary, stable string) (c, s counts, err error) {
	vec, ok := v.(model.Vector)
	if !ok {
		return c, s, fmt.Errorf("want a vector, got %s", v.Type())
	}
	for _, smp := range vec {
		n := float64(smp.Value)
		if math.IsNaN(n) || n < 0 {
			continue
		}
		var dst *counts
		switch string(smp.Metric["deployment"]) {
		case canary:
			dst = &c
		case stable:
			dst = &s
		default:
			continue
		}
		dst.total += n
		if smp.Metric["classification"] == "failure" {
			dst.bad += n
		}
	}
	return c, s, nil
}

// splitByDeployment reads a vector with one sample per deployment.
func splitByDeployment(v model.Value, canary, stable string) (c, s float64, err error) {
	c, s = math.NaN(), math.NaN()
	vec, ok := v.(model.Vector)
	if !ok {
		return c, s, fmt.Errorf("want a vector, got %s", v.Type())
	}
	for _, smp := range vec {
		switch string(smp.Metric["deployment"]) {
		case canary:
			c = float64(smp.Value)
		case stable:
			s = float64(smp.Value)
		}
	}
	return c, s, nil
}

// histogram is cumulative bucket counts by upper bound (ms); +Inf included.
type histogram map[float64]float64

// splitBuckets reads a `sum by (deployment, le)` vector into two histograms.
func splitBuckets(v model.Value, canary, stable string) (c, s histogram, err error) {
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, nil, fmt.Errorf("want a vector, got %s", v.Type())
	}
	c, s = histogram{}, histogram{}
	for _, smp := range vec {
		le, perr := strconv.ParseFloat(strings.TrimSpace(string(smp.Metric["le"])), 64)
		if perr != nil || math.IsNaN(float64(smp.Value)) {
			continue
		}
		switch string(smp.Metric["deployment"]) {
		case canary:
			c[le] += float64(smp.Value)
		case stable:
			s[le] += float64(smp.Value)
		}
	}
	return c, s, nil
}

// total is the +Inf bucket, rounded to whole requests.
func (h histogram) total() float64 { return math.Round(h[math.Inf(1)]) }

// slowerThan counts requests above the bucket bound le (which must be a bucket).
func (h histogram) slowerThan(le float64) float64 {
	return math.Max(0, h.total()-math.Round(h[le]))
}

// quantileBound is the smallest finite bucket bound under which at least
// share q of the requests fall, or false if only +Inf does.
func (h histogram) quantileBound(q float64) (float64, bool) {
	total := h.total()
	if total <= 0 {
		return 0, false
	}
	for _, le := range h.bounds() {
		if math.Round(h[le]) >= q*total {
			return le, true
		}
	}
	return 0, false
}

// boundAtLeast is the smallest finite bucket bound ≥ ms, or false.
func (h histogram) boundAtLeast(ms float64) (float64, bool) {
	for _, le := range h.bounds() {
		if le >= ms {
			return le, true
		}
	}
	return 0, false
}

// bounds lists the finite bucket bounds in increasing order.
func (h histogram) bounds() []float64 {
	out := make([]float64, 0, len(h))
	for le := range h {
		if !math.IsInf(le, 1) {
			out = append(out, le)
		}
	}
	slices.Sort(out)
	return out
}
