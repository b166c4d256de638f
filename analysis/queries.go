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

// offsetLabel marks the rows of an instants query read in the past; its
// value is how long ago, as rendered by promRange ("60s").
const offsetLabel = "canaryd_offset"

// instants asks for a counter of canary and stable summed per scrape target
// and by one label (classification, le), now and rngs ago, in one query; the
// past rows carry offsetLabel. The reader computes the growth (growth).
//
// Counting growth exactly, rather than with increase(), matters: increase()
// extrapolates each series to the window's edges on its own. For a canary
// whose series start inside the window (always, early in a rollout) the
// bucket series of one histogram are stretched by different factors —
// measured: le="30" ×1.52 and le="+Inf" ×1.82 on the same pod — which
// invented 17 "slow" requests out of 79 and rolled back good canaries 2 times
// in 30. The sequential test's error rates assume true counts; these are.
//
// Reading the instants, rather than having Prometheus subtract them
// (`clamp_min(x - x offset r, 0) or (x unless x offset r)`, per series, once
// for the window and once since the canary started), cuts Prometheus's CPU
// per check by a third to a half: each series is read once per instant instead of twice per range,
// and the only work on whole label sets left is the sum. Measured with
// BenchmarkPrometheusCostPerCheck (200 canaries and stables, Linkerd's label
// set, 2 cores): 12.8–14.9 ms of Prometheus CPU per check before, 6.9–7.5 ms
// after in one run; 11.5–12.6 ms and 7.8–8.8 ms in another.
func (b queryBuilder) instants(metric, by string, rngs ...string) string {
	sum := fmt.Sprintf("sum by (namespace, deployment, pod, instance, %s) (%s{%s}", by, metric, b.selector())
	q := sum + ")"
	for _, r := range slices.Compact(slices.Clone(rngs)) {
		q += fmt.Sprintf(" or label_replace(%s offset %s), %q, %q, \"\", \"\")", sum, r, offsetLabel, r)
	}
	return q
}

// counts asks for the responses by classification, now and rngs ago.
func (b queryBuilder) counts(rngs ...string) string {
	return b.instants("response_total", "classification", rngs...)
}

// buckets asks for the cumulative latency buckets by le, now and rngs ago.
func (b queryBuilder) buckets(rngs ...string) string {
	return b.instants("response_latency_ms_bucket", "le", rngs...)
}

// grown is a counter's growth per deployment and value of the `by` label.
type grown map[[2]string]float64

// growth reads an instants answer for the range rng: per scrape target and
// value of `by`, its sum now minus its sum rng ago — 0 if it fell (a
// restarted proxy starts again from 0) — or all of it if the target had no
// such series then (a pod, or a status code, born since: counters start at
// 0). A target not scraped now (a pod gone) adds nothing.
func growth(vec model.Vector, by model.LabelName, rng string) grown {
	then := map[model.Fingerprint]float64{}
	for _, smp := range vec {
		if string(smp.Metric[offsetLabel]) != rng {
			continue
		}
		then[withoutOffset(smp.Metric).Fingerprint()] = float64(smp.Value)
	}
	out := grown{}
	for _, smp := range vec {
		if _, past := smp.Metric[offsetLabel]; past {
			continue
		}
		n := float64(smp.Value)
		if math.IsNaN(n) {
			continue
		}
		if before, ok := then[smp.Metric.Fingerprint()]; ok {
			n = math.Max(0, n-before)
		}
		out[[2]string{string(smp.Metric["deployment"]), string(smp.Metric[by])}] += n
	}
	return out
}

func withoutOffset(m model.Metric) model.Metric {
	c := m.Clone()
	delete(c, offsetLabel)
	return c
}

// outcome counts of one deployment.
type counts struct{ total, bad float64 }

// countsOf splits responses grown by classification into canary and stable
// counts; "bad" is classification="failure".
func (g grown) countsOf(canary, stable string) (c, s counts) {
	for k, n := range g {
		var dst *counts
		switch k[0] {
		case canary:
			dst = &c
		case stable:
			dst = &s
		default:
			continue
		}
		dst.total += n
		if k[1] == "failure" {
			dst.bad += n
		}
	}
	return c, s
}

// histogram is cumulative bucket counts by upper bound (ms); +Inf included.
type histogram map[float64]float64

// histogramsOf splits buckets grown by le into canary and stable histograms.
func (g grown) histogramsOf(canary, stable string) (c, s histogram) {
	c, s = histogram{}, histogram{}
	for k, n := range g {
		le, err := strconv.ParseFloat(strings.TrimSpace(k[1]), 64)
		if err != nil {
			continue
		}
		switch k[0] {
		case canary:
			c[le] += n
		case stable:
			s[le] += n
		}
	}
	return c, s
}

// quantile estimates the q-quantile the way PromQL's histogram_quantile
// does for classic buckets: linear interpolation inside the bucket where the
// rank falls, the lowest bucket starting at 0, and the highest finite bound
// when the rank falls in +Inf. NaN without observations or a +Inf bucket.
func (h histogram) quantile(q float64) float64 {
	inf, ok := h[math.Inf(1)]
	if !ok || len(h) < 2 || !(inf > 0) {
		return math.NaN()
	}
	les := append(h.bounds(), math.Inf(1))
	cum := make([]float64, len(les))
	for i, le := range les {
		cum[i] = h[le]
		if i > 0 && cum[i] < cum[i-1] { // counts read at slightly different moments
			cum[i] = cum[i-1]
		}
	}
	total := cum[len(cum)-1]
	rank := q * total
	b, _ := slices.BinarySearch(cum, rank) // the first bucket holding the rank
	if b == len(les)-1 {
		return les[len(les)-2]
	}
	if b == 0 && les[0] <= 0 {
		return les[0]
	}
	start, end, n := 0.0, les[b], cum[b]
	if b > 0 {
		start, n, rank = les[b-1], cum[b]-cum[b-1], rank-cum[b-1]
	}
	return start + (end-start)*(rank/n)
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
