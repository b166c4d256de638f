package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProm answers /api/v1/query the way Prometheus does, from canned data
// keyed by the kind of built-in query, so each verdict path can be set up
// exactly. Anything not canned is an empty vector.
type fakeProm struct {
	mu      sync.Mutex
	queries []string
	forms   []http.Request

	canary, stable string
	window         [2]counts // canary, stable over the window
	since          [2]counts // canary, stable since the canary started
	p99            [2]float64
	hist           [2]histogram
	custom         map[string]string // query substring → "data" JSON
	fail           func(q string) (status int, body string)
	delay          time.Duration
}

func newFake(canary, stable string) *fakeProm {
	return &fakeProm{canary: canary, stable: stable, p99: [2]float64{math.NaN(), math.NaN()}, custom: map[string]string{}}
}

func (f *fakeProm) start(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.URL.Path != "/api/v1/query" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.forms = append(f.forms, *r.Clone(r.Context()))
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	if f.fail != nil {
		if status, body := f.fail(q); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":%s}`, f.answer(q))
}

func (f *fakeProm) answer(q string) string {
	for sub, data := range f.custom {
		if strings.Contains(q, sub) {
			return data
		}
	}
	switch {
	case strings.HasPrefix(q, "histogram_quantile"):
		return vectorJSON(f.p99Samples())
	case strings.Contains(q, "response_latency_ms_bucket"):
		return vectorJSON(f.bucketSamples())
	case strings.Contains(q, "response_total") && strings.Contains(q, "offset 60s"):
		return vectorJSON(f.countSamples(f.window))
	case strings.Contains(q, "response_total"):
		return vectorJSON(f.countSamples(f.since))
	}
	return vectorJSON(nil)
}

type sample struct {
	labels map[string]string
	value  float64
}

func vectorJSON(samples []sample) string {
	type elem struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	out := make([]elem, 0, len(samples))
	for _, s := range samples {
		out = append(out, elem{s.labels, [2]any{1700000000.0, strconv.FormatFloat(s.value, 'f', -1, 64)}})
	}
	b, _ := json.Marshal(map[string]any{"resultType": "vector", "result": out})
	return string(b)
}

func (f *fakeProm) names() [2]string { return [2]string{f.canary, f.stable} }

func (f *fakeProm) countSamples(c [2]counts) []sample {
	var out []sample
	for i, dep := range f.names() {
		if c[i].total == 0 {
			continue
		}
		out = append(out, sample{map[string]string{"namespace": "shop", "deployment": dep, "classification": "success"}, c[i].total - c[i].bad})
		if c[i].bad > 0 {
			out = append(out, sample{map[string]string{"namespace": "shop", "deployment": dep, "classification": "failure"}, c[i].bad})
		}
	}
	return out
}

func (f *fakeProm) p99Samples() []sample {
	var out []sample
	for i, dep := range f.names() {
		if !math.IsNaN(f.p99[i]) {
			out = append(out, sample{map[string]string{"namespace": "shop", "deployment": dep}, f.p99[i]})
		}
	}
	return out
}

func (f *fakeProm) bucketSamples() []sample {
	var out []sample
	for i, dep := range f.names() {
		for le, n := range f.hist[i] {
			out = append(out, sample{map[string]string{"namespace": "shop", "deployment": dep, "le": strconv.FormatFloat(le, 'f', -1, 64)}, n})
		}
	}
	return out
}

func (f *fakeProm) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

// fastHist: every request under 50 ms.
func fastHist(total float64) histogram {
	return histogram{10: total * 0.9, 20: total * 0.995, 50: total, 500: total, math.Inf(1): total}
}
