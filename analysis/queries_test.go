package analysis

import (
	"math"
	"testing"

	"github.com/prometheus/common/model"
)

func TestQuantileInterpolatesAsHistogramQuantileDoes(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"rank in the first bucket, which starts at 0", histogram{10: 50, 20: 90, inf: 100}, 0.5, 10},
		{"rank inside a bucket", histogram{10: 50, 20: 90, inf: 100}, 0.7, 15},
		{"rank in +Inf: the highest finite bound", histogram{10: 50, 20: 90, inf: 100}, 0.99, 20},
		{"counts read a moment apart are made monotonic", histogram{10: 60, 20: 55, inf: 100}, 0.3, 5},
		{"no observations", histogram{10: 0, inf: 0}, 0.99, math.NaN()},
		{"no +Inf bucket", histogram{10: 5, 20: 9}, 0.5, math.NaN()},
		{"only +Inf", histogram{inf: 9}, 0.5, math.NaN()},
		{"no buckets at all", histogram{}, 0.99, math.NaN()},
	}
	for _, tc := range cases {
		got := tc.h.quantile(tc.q)
		if !(got == tc.want || math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("%s: quantile(%v) of %v = %v, want %v", tc.name, tc.q, tc.h, got, tc.want)
		}
	}
}

func TestGrowthIsPerScrapeTarget(t *testing.T) {
	row := func(pod, class string, v float64, offset string) *model.Sample {
		m := model.Metric{"namespace": "shop", "deployment": "cart", "pod": model.LabelValue(pod), "instance": "x", "classification": model.LabelValue(class)}
		if offset != "" {
			m[offsetLabel] = model.LabelValue(offset)
		}
		return &model.Sample{Metric: m, Value: model.SampleValue(v)}
	}
	vec := model.Vector{
		row("grew", "success", 100, ""), row("grew", "success", 40, "60s"), row("grew", "success", 10, "90s"),
		row("grew", "failure", 7, ""), // a status born since: all of it
		row("born", "success", 30, ""), row("born", "success", 1, "90s"),
		row("restarted", "success", 5, ""), row("restarted", "success", 50, "60s"),
		row("gone", "success", 80, "60s"),
		row("unreadable", "success", math.NaN(), ""),
	}
	for _, tc := range []struct {
		rng           string
		success, fail float64
	}{
		{"60s", 60 + 30 + 0, 7},
		{"90s", 90 + 29 + 5, 7},
		{"30s", 100 + 30 + 5, 7}, // nothing read then: everything was born since
	} {
		c, s := growth(vec, "classification", tc.rng).countsOf("cart-canary", "cart")
		if c != (counts{}) || s != (counts{total: tc.success + tc.fail, bad: tc.fail}) {
			t.Errorf("over %s: canary %+v stable %+v, want stable %v of which %v bad", tc.rng, c, s, tc.success+tc.fail, tc.fail)
		}
	}
}
