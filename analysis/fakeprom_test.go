package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProm answers /api/v1/query the way Prometheus does, from canned data
// keyed by the kind of built-in query, so each verdict path can be set up
// exactly: it prints counters now and at the window's and the since range's
// offsets such that they grew by the canned amounts. Anything not canned is
// an empty vector.
type fakeProm struct {
	mu      sync.Mutex
	queries []string
	forms   []http.Request

	canary, stable string
	window         [2]counts         // canary, stable over the window
	since          [2]counts         // canary, stable since the canary started
	winHist        [2]histogram      // latency buckets over the window (its p99 is the one reported)
	hist           [2]histogram      // latency buckets since the canary started
	custom         map[string]string // query substring → "data" JSON
	fail           func(q string) (status int, body string)
	delay          time.Duration
}

func newFake(canary, stable string) *fakeProm {
	return &fakeProm{canary: canary, stable: stable, custom: map[string]string{}}
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
	offsets := offsetsOf(q)
	if len(offsets) == 0 {
		return vectorJSON(nil)
	}
	var grew [2]map[string]map[string]float64 // window, since → deployment → by-value → growth
	by := "classification"
	if strings.Contains(q, "response_latency_ms_bucket") {
		by = "le"
		grew = [2]map[string]map[string]float64{f.bucketGrowth(f.winHist), f.bucketGrowth(f.hist)}
	} else if strings.Contains(q, "response_total") {
		grew = [2]map[string]map[string]float64{f.countGrowth(f.window), f.countGrowth(f.since)}
	} else {
		return vectorJSON(nil)
	}
	return vectorJSON(instantRows(by, offsets, grew))
}

// offsetsOf lists the ranges an instants query reads in the past, in order:
// the window, then (if asked) the since range.
func offsetsOf(q string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`offset (\d+s)\)`).FindAllStringSubmatch(q, -1) {
		out = append(out, m[1])
	}
	return out
}

// instantRows prints, per deployment and `by` value, a counter now and at
// each offset such that it grew by grew[0] over the first offset and by
// grew[1] over the second: now = the larger growth, then = now − growth.
func instantRows(by string, offsets []string, grew [2]map[string]map[string]float64) []sample {
	var out []sample
	lbl := func(dep, v, off string) map[string]string {
		m := map[string]string{"namespace": "shop", "deployment": dep, "pod": dep + "-0", "instance": "10.0.0.1:4191", by: v}
		if off != "" {
			m[offsetLabel] = off
		}
		return m
	}
	keys := map[[2]string]bool{}
	for _, g := range grew {
		for dep, vs := range g {
			for v := range vs {
				keys[[2]string{dep, v}] = true
			}
		}
	}
	for k := range keys {
		now := math.Max(grew[0][k[0]][k[1]], grew[1][k[0]][k[1]])
		out = append(out, sample{lbl(k[0], k[1], ""), now})
		for i, off := range offsets[:min(len(offsets), 2)] {
			out = append(out, sample{lbl(k[0], k[1], off), now - grew[i][k[0]][k[1]]})
		}
	}
	return out
}

func (f *fakeProm) countGrowth(c [2]counts) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for i, dep := range f.names() {
		if c[i].total == 0 {
			continue
		}
		out[dep] = map[string]float64{"success": c[i].total - c[i].bad, "failure": c[i].bad}
	}
	return out
}

func (f *fakeProm) bucketGrowth(h [2]histogram) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for i, dep := range f.names() {
		for le, n := range h[i] {
			if out[dep] == nil {
				out[dep] = map[string]float64{}
			}
			out[dep][strconv.FormatFloat(le, 'f', -1, 64)] = n
		}
	}
	return out
}

func (f *fakeProm) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

// withP99 is a histogram of total requests whose p99, interpolated as
// histogram_quantile does, is p99 ms: the rank falls in the Linkerd bucket
// holding p99, every request above it sits at that bucket's top.
func withP99(total, p99 float64) histogram {
	lo, hi := 0.0, 0.0
	for _, le := range []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000} {
		if lo, hi = hi, le; p99 < le {
			break
		}
	}
	rank, share := 0.99*total, (p99-lo)/(hi-lo)
	below := (rank - share*total) / (1 - share) // requests under lo
	return histogram{lo: below, hi: total, math.Inf(1): total}
}

// fastHist: every request under 50 ms.
func fastHist(total float64) histogram {
	return histogram{10: total * 0.9, 20: total * 0.995, 50: total, 500: total, math.Inf(1): total}
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
