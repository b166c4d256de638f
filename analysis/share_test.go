package analysis

import (
	"context"
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

// manyProm answers the built-in queries for any number of Deployments: for
// every namespace and name its selector lists, rows from `bad` (failures of
// 1,000 responses, and as many slower than 100 ms); a listed Deployment without an
// entry answers 999 failures, so a check that read another's rows would show.
// While held, queries wait for release.
type manyProm struct {
	bad     map[string]float64 // "namespace/deployment" → failures
	mu      sync.Mutex
	queries []string
	times   []float64
	held    bool
	release chan struct{}
	fail    bool
}

var (
	nsMatcher  = regexp.MustCompile(`namespace=~?("(?:[^"\\]|\\.)*")`)
	depMatcher = regexp.MustCompile(`deployment=~("(?:[^"\\]|\\.)*")`)
)

func (f *manyProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	q := r.Form.Get("query")
	at, _ := strconv.ParseFloat(r.Form.Get("time"), 64)
	f.mu.Lock()
	f.queries, f.times = append(f.queries, q), append(f.times, at)
	held := f.held
	f.mu.Unlock()
	if held {
		<-f.release
	}
	w.Header().Set("Content-Type", "application/json")
	if f.fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"status":"error","errorType":"unavailable","error":"too many queries"}`)
		return
	}
	var rows []sample
	for _, ns := range listed(nsMatcher, q) {
		for _, dep := range listed(depMatcher, q) {
			bad, ok := f.bad[ns+"/"+dep]
			if !ok {
				bad = 999
			}
			lbl := func(kv ...string) map[string]string {
				m := map[string]string{"namespace": ns, "deployment": dep}
				for i := 0; i < len(kv); i += 2 {
					m[kv[i]] = kv[i+1]
				}
				return m
			}
			// Counters born since every range: they grew by all they hold.
			switch {
			case strings.Contains(q, "response_latency_ms_bucket"):
				rows = append(rows, sample{lbl("le", "100"), 1000 - bad}, sample{lbl("le", "+Inf"), 1000})
			default:
				rows = append(rows, sample{lbl("classification", "success"), 1000 - bad},
					sample{lbl("classification", "failure"), bad})
			}
		}
	}
	fmt.Fprintf(w, `{"status":"success","data":%s}`, vectorJSON(rows))
}

// listed reads the values a matcher names: one, or several alternatives.
func listed(re *regexp.Regexp, q string) []string {
	m := re.FindStringSubmatch(q)
	if m == nil {
		return nil
	}
	s, err := strconv.Unquote(m[1])
	if err != nil {
		return nil
	}
	return strings.Split(regexp.MustCompile(`\\(.)`).ReplaceAllString(s, "$1"), "|")
}

func (f *manyProm) seen() (int, []float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queries), append([]float64(nil), f.times...)
}

// shareTargets are eight checks in two namespaces; app0–app2 are in both,
// app3 and app4 in one each, so a shared selector also lists Deployments no
// one asked about (shop/app4 answers 999 failures).
func shareTargets() []Target {
	var ts []Target
	for i, ns := range []string{"shop", "shop", "shop", "shop", "mall", "mall", "mall", "mall"} {
		name := fmt.Sprintf("app%d", i%5)
		ts = append(ts, Target{
			Namespace: ns, Canary: name + "-canary", Stable: name,
			// Checks made a few milliseconds apart; the canaries started
			// 100.5 s before the first, so every "since" is 101 s.
			Window: time.Minute, Since: testNow.Add(-100500 * time.Millisecond), Now: testNow.Add(time.Duration(i) * time.Millisecond),
			MinSuccessRate: 99, MaxLatencyP99: 500 * time.Millisecond, MinRequests: 20,
		})
	}
	ts[5].Window = 2 * time.Minute // another analysis window: its own query in the round
	return ts
}

func shareBad(ts []Target) map[string]float64 {
	bad := map[string]float64{}
	for i, t := range ts {
		bad[t.Namespace+"/"+t.Canary] = float64(i) // target i's canary: i failures in 1,000
		bad[t.Namespace+"/"+t.Stable] = 1
	}
	return bad
}

func TestChecksAtTheSameMomentShareTheirQueries(t *testing.T) {
	ts := shareTargets()
	f := &manyProm{bad: shareBad(ts), release: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	// Each check alone, for the answers sharing must not change.
	solo := newTestProm(t, srv.URL, nil)
	want := make([]Result, len(ts))
	for i, tg := range ts {
		want[i] = solo.Analyze(context.Background(), tg)
		if want[i].Canary.Requests != 1000 || want[i].Canary.SuccessRate != 100-float64(i)/10 {
			t.Fatalf("solo check %d read %+v, want its own canary (%d failures in 1,000)", i, want[i].Canary, i)
		}
	}
	before, _ := f.seen()
	if before != 2*len(ts) {
		t.Fatalf("solo: %d queries for %d checks, want 2 each", before, len(ts))
	}

	// Given the first check's queries out at Prometheus (held there),
	p := newTestProm(t, srv.URL, func(c *Config) { c.Share = true })
	f.mu.Lock()
	f.held = true
	f.mu.Unlock()
	got := make([]Result, len(ts))
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = p.Analyze(context.Background(), ts[0]) })
	waitFor(t, func() bool { n, _ := f.seen(); return n == before+2 })
	// when seven more checks ask meanwhile,
	for i := 1; i < len(ts); i++ {
		wg.Go(func() { got[i] = p.Analyze(context.Background(), ts[i]) })
	}
	waitFor(t, func() bool {
		p.share.mu.Lock()
		defer p.share.mu.Unlock()
		for l := range lanes {
			if len(p.share.waiting[l]) != len(ts)-1 {
				return false
			}
		}
		return true
	})
	f.mu.Lock()
	f.held = false
	f.mu.Unlock()
	close(f.release)
	wg.Wait()

	// then they go together: one query per question and range, evaluated
	// at the latest of their times,
	n, times := f.seen()
	if n-before != 2+4 {
		t.Errorf("%d queries for %d checks, want 2 for the first and 4 for the other seven (two windows)", n-before, len(ts))
	}
	latest := float64(ts[len(ts)-1].Now.UnixNano()) / 1e9
	for _, at := range times[before+2:] {
		if math.Abs(at-latest) > 1e-6 {
			t.Errorf("shared query evaluated at %.3f, want the latest check's time %.3f", at, latest)
		}
	}
	// and each check reads its own answer, as it would alone.
	for i := range ts {
		g, w := got[i], want[i]
		if g.Verdict != w.Verdict || g.Reason != w.Reason || g.Canary != w.Canary || g.Stable != w.Stable || g.NotWorse != w.NotWorse {
			t.Errorf("check %d shared: %s %q %+v %+v; alone: %s %q %+v %+v",
				i, g.Verdict, g.Reason, g.Canary, g.Stable, w.Verdict, w.Reason, w.Canary, w.Stable)
		}
	}
}

func TestASharedQueryThatFailsFailsEveryCheckInIt(t *testing.T) {
	ts := shareTargets()[:3]
	f := &manyProm{bad: shareBad(ts), release: make(chan struct{}), held: true, fail: true}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p := newTestProm(t, srv.URL, func(c *Config) { c.Share = true })
	got := make([]Result, len(ts))
	var wg sync.WaitGroup
	wg.Go(func() { got[0] = p.Analyze(context.Background(), ts[0]) })
	waitFor(t, func() bool { n, _ := f.seen(); return n == 2 })
	for i := 1; i < len(ts); i++ {
		wg.Go(func() { got[i] = p.Analyze(context.Background(), ts[i]) })
	}
	waitFor(t, func() bool {
		p.share.mu.Lock()
		defer p.share.mu.Unlock()
		return len(p.share.waiting[laneBuckets]) == len(ts)-1
	})
	f.mu.Lock()
	f.held = false
	f.mu.Unlock()
	close(f.release)
	wg.Wait()
	for i, r := range got {
		if r.Verdict != Error || !strings.Contains(r.Reason, "HTTP 503") {
			t.Errorf("check %d: %s %q, want Error naming HTTP 503", i, r.Verdict, r.Reason)
		}
		if i > 0 && !strings.Contains(r.Reason, "(shared by 2 checks)") {
			t.Errorf("check %d: %q does not say its query was shared", i, r.Reason)
		}
	}
}

func TestACheckWaitingForASharedQueryEndsWithItsContext(t *testing.T) {
	ts := shareTargets()[:2]
	f := &manyProm{bad: shareBad(ts), release: make(chan struct{}), held: true}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	defer close(f.release)
	p := newTestProm(t, srv.URL, func(c *Config) { c.Share = true })
	go p.Analyze(context.Background(), ts[0])
	waitFor(t, func() bool { n, _ := f.seen(); return n == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := p.Analyze(ctx, ts[1])
	if r.Verdict != Error || !strings.Contains(r.Reason, "waiting for a shared query") {
		t.Errorf("got %s %q, want Error: waiting for a shared query", r.Verdict, r.Reason)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}
