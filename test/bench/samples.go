package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a scrape: a counter or gauge value, or a
// histogram's count and sum.
type Sample struct {
	Labels map[string]string
	Value  float64 // counter, gauge, untyped; a histogram's sample count
	Sum    float64 // histograms only
}

// Samples are one scrape, by metric name.
type Samples map[string][]Sample

// Scrape reads a Prometheus text exposition (canaryd's or Prometheus's own).
func Scrape(ctx context.Context, url string) (Samples, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	out := Samples{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			s := Sample{Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.Value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.Value = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.Value, s.Sum = float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			case dto.MetricType_SUMMARY:
				s.Value, s.Sum = float64(m.GetSummary().GetSampleCount()), m.GetSummary().GetSampleSum()
			default:
				s.Value = m.GetUntyped().GetValue()
			}
			out[name] = append(out[name], s)
		}
	}
	return out, nil
}

// Sum adds the values of name's series whose labels match every pair of
// match (a value of "*" matches any). An absent metric sums to 0.
func (s Samples) Sum(name string, match ...string) float64 {
	total := 0.0
	for _, x := range s[name] {
		if matches(x.Labels, match) {
			total += x.Value
		}
	}
	return total
}

// SumOf is Sum of the histogram sums.
func (s Samples) SumOf(name string, match ...string) float64 {
	total := 0.0
	for _, x := range s[name] {
		if matches(x.Labels, match) {
			total += x.Sum
		}
	}
	return total
}

// Get is the one value of name (NaN when absent).
func (s Samples) Get(name string) float64 {
	if len(s[name]) == 0 {
		return math.NaN()
	}
	return s[name][0].Value
}

// By sums name's series by one label's value.
func (s Samples) By(name, label string, match ...string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s[name] {
		if matches(x.Labels, match) {
			out[x.Labels[label]] += x.Value
		}
	}
	return out
}

func matches(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if v := match[i+1]; v != "*" && labels[match[i]] != v {
			return false
		}
	}
	return true
}
