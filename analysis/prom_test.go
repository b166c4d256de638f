package analysis

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func testTarget() Target {
	return Target{
		Namespace: "shop", Canary: "cart-canary", Stable: "cart",
		Window: time.Minute, Since: testNow.Add(-100 * time.Second), Now: testNow,
		MinSuccessRate: 99, MaxLatencyP99: 500 * time.Millisecond, MinRequests: 20,
	}
}

// healthy fills f with a canary and a stable that both do well.
func healthy(f *fakeProm) {
	f.window = [2]counts{{1000, 1}, {9000, 9}}
	f.since = [2]counts{{1600, 1}, {15000, 15}}
	f.winHist = [2]histogram{withP99(1000, 42), withP99(9000, 40)}
	f.hist = [2]histogram{fastHist(1600), fastHist(15000)}
}

func newTestProm(t *testing.T, url string, mutate func(*Config)) *Prom {
	t.Helper()
	cfg := Config{Client: ClientConfig{Address: url, Timeout: 2 * time.Second}, ScrapeInterval: time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := NewPrometheus(cfg)
	if err != nil {
		t.Fatalf("NewPrometheus: %v", err)
	}
	return p
}

func fptr(v float64) *float64 { return &v }

func TestAnalyzeVerdicts(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(*fakeProm, *Target, *Config)
		verdict    Verdict
		final      bool
		reasonHas  []string
		wantCanary *Numbers
	}{
		{
			name:       "a healthy canary passes and says why",
			setup:      func(f *fakeProm, _ *Target, _ *Config) { healthy(f) },
			verdict:    Pass,
			reasonHas:  []string{"success rate 99.9%", "p99 42ms", "over 1m (1000 requests)", "not worse than stable in errors and latency"},
			wantCanary: &Numbers{Requests: 1000, SuccessRate: 99.9, LatencyP99Ms: 42},
		},
		{
			name: "a success rate under the threshold fails, not final, when stable is as bad",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				healthy(f)
				f.window = [2]counts{{212, 11}, {2000, 100}}
				f.since = [2]counts{{212, 11}, {2000, 100}}
			},
			verdict:   Fail,
			reasonHas: []string{"success rate 94.81% < 99% over 1m (212 requests)"},
		},
		{
			name:      "a p99 over the maximum fails",
			setup:     func(f *fakeProm, _ *Target, _ *Config) { healthy(f); f.winHist[0] = withP99(1000, 742) },
			verdict:   Fail,
			reasonHas: []string{"p99 742ms > 500ms over 1m (1000 requests)"},
		},
		{
			name: "the judge rejects a canary clearly worse than stable, final",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				healthy(f)
				f.since = [2]counts{{100, 10}, {900, 1}}
			},
			verdict: Fail, final: true,
			reasonHas: []string{"canary worse than stable: 10 of 100 requests failed (10%) vs stable 0.11% since 1m40s"},
		},
		{
			name: "the judge rejects a canary slower than stable's p99, final",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				healthy(f)
				f.hist[0] = histogram{10: 100, 20: 300, 50: 1600, 500: 1600, math.Inf(1): 1600}
			},
			verdict: Fail, final: true,
			reasonHas: []string{"requests slower than 20ms"},
		},
		{
			name: "with the judge disabled only thresholds count",
			setup: func(f *fakeProm, _ *Target, c *Config) {
				healthy(f)
				f.since = [2]counts{{100, 10}, {900, 1}}
				c.Judge.Disabled = true
			},
			verdict: Pass,
		},
		{
			name: "too few canary requests is inconclusive",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				healthy(f)
				f.window[0] = counts{12, 0}
				f.since[0] = counts{12, 0}
			},
			verdict:   Inconclusive,
			reasonHas: []string{"12 canary requests over 1m, fewer than the 20 needed"},
		},
		{
			name:      "no traffic at all is inconclusive and hints at scraping",
			setup:     func(f *fakeProm, _ *Target, _ *Config) {},
			verdict:   Inconclusive,
			reasonHas: []string{"0 canary requests", "is Prometheus scraping"},
		},
		{
			name:      "traffic but no latency series is an error, not a pass",
			setup:     func(f *fakeProm, _ *Target, _ *Config) { healthy(f); f.winHist[0] = nil },
			verdict:   Error,
			reasonHas: []string{"no canary p99 latency over 1m (1000 requests)"},
		},
		{
			name: "Prometheus answering 503 is an error naming the query, status and body",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				f.fail = func(string) (int, string) { return 503, "upstream connect error\n or disconnect" }
			},
			verdict:   Error,
			reasonHas: []string{`query "canary and stable`, "HTTP 503", "server_error", "body: upstream connect error or disconnect"},
		},
		{
			name: "a query Prometheus rejects is an error with its error type",
			setup: func(f *fakeProm, _ *Target, _ *Config) {
				f.fail = func(q string) (int, string) {
					if strings.Contains(q, "response_latency_ms_bucket") {
						return 400, `{"status":"error","errorType":"bad_data","error":"parse error: unexpected character"}`
					}
					return 0, ""
				}
			},
			verdict:   Error,
			reasonHas: []string{`query "canary and stable latency buckets over 1m and since canary start (1m40s)" failed: HTTP 400: bad_data: parse error`},
		},
		{
			name: "a slow Prometheus times out into an error",
			setup: func(f *fakeProm, _ *Target, c *Config) {
				f.delay = time.Second
				c.Client.Timeout = 100 * time.Millisecond
			},
			verdict:   Error,
			reasonHas: []string{"timed out after 100ms"},
		},
		{
			name: "a custom check out of bounds fails",
			setup: func(f *fakeProm, tg *Target, c *Config) {
				healthy(f)
				c.Checks = []Check{{Name: "queue-depth", Query: `max(queue_depth{namespace="{{.namespace}}"})`, Max: fptr(100)}}
				f.custom["queue_depth"] = `{"resultType":"vector","result":[{"metric":{},"value":[1,"250"]}]}`
				tg.Checks = []string{"queue-depth"}
			},
			verdict:   Fail,
			reasonHas: []string{"queue-depth 250 > max 100"},
		},
		{
			name: "a custom check with no data is an error, not a failure",
			setup: func(f *fakeProm, tg *Target, c *Config) {
				healthy(f)
				c.Checks = []Check{{Name: "queue-depth", Query: `max(queue_depth)`, Min: fptr(0)}}
				tg.Checks = []string{"queue-depth"}
			},
			verdict:   Error,
			reasonHas: []string{`custom check "queue-depth": no data`},
		},
		{
			name:      "an unknown custom check is an error",
			setup:     func(f *fakeProm, tg *Target, _ *Config) { healthy(f); tg.Checks = []string{"nope"} },
			verdict:   Error,
			reasonHas: []string{`unknown custom check "nope"`},
		},
		{
			name:      "a target without a window is an error",
			setup:     func(f *fakeProm, tg *Target, _ *Config) { healthy(f); tg.Window = 0 },
			verdict:   Error,
			reasonHas: []string{"window"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("cart-canary", "cart")
			tg := testTarget()
			var cfg Config
			tc.setup(f, &tg, &cfg)
			srv := f.start(t)
			p := newTestProm(t, srv.URL, func(c *Config) {
				c.Judge, c.Checks = cfg.Judge, cfg.Checks
				if cfg.Client.Timeout != 0 {
					c.Client.Timeout = cfg.Client.Timeout
				}
			})
			r := p.Analyze(context.Background(), tg)
			if r.Verdict != tc.verdict || r.Final != tc.final {
				t.Fatalf("verdict %s final=%v, want %s final=%v; reason: %s", r.Verdict, r.Final, tc.verdict, tc.final, r.Reason)
			}
			for _, want := range tc.reasonHas {
				if !strings.Contains(r.Reason, want) {
					t.Errorf("reason %q lacks %q", r.Reason, want)
				}
			}
			if strings.Contains(r.Reason, "\n") || r.Reason == "" {
				t.Errorf("reason is not one line: %q", r.Reason)
			}
			if w := tc.wantCanary; w != nil && (r.Canary.Requests != w.Requests ||
				math.Abs(r.Canary.SuccessRate-w.SuccessRate) > 1e-9 || r.Canary.LatencyP99Ms != w.LatencyP99Ms) {
				t.Errorf("canary numbers %+v, want %+v", r.Canary, *w)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("result does not marshal: %v", err)
			}
		})
	}
}

func TestAnalyzeUnreachablePrometheus(t *testing.T) {
	srv := newFake("a", "b").start(t)
	url := srv.URL
	srv.Close()
	p := newTestProm(t, url, nil)
	r := p.Analyze(context.Background(), testTarget())
	if r.Verdict != Error || !strings.Contains(r.Reason, "connection refused") {
		t.Fatalf("got %s %q, want Error with connection refused", r.Verdict, r.Reason)
	}
	if !math.IsNaN(r.Canary.Requests) {
		t.Errorf("numbers %+v, want NaN (no data)", r.Canary)
	}
}

func TestQueriesAreBatchedScopedAndTimed(t *testing.T) {
	f := newFake("cart-canary", "cart")
	healthy(f)
	srv := f.start(t)
	p := newTestProm(t, srv.URL, nil)
	p.Analyze(context.Background(), testTarget())
	qs := f.seen()
	if len(qs) != 2 {
		t.Fatalf("%d queries, want 2 (responses and latency buckets, now, a window ago and at the canary's start): %q", len(qs), qs)
	}
	for _, q := range qs {
		for _, want := range []string{`namespace="shop"`, `deployment=~"cart|cart-canary"`,
			`direction="inbound"`, `target_port!="4191"`} {
			if !strings.Contains(q, want) {
				t.Errorf("query %q lacks %s", q, want)
			}
		}
		if !strings.Contains(q, "offset 60s") || !strings.Contains(q, "offset 100s") {
			t.Errorf("query %q lacks the window or the since range", q)
		}
	}
	for _, r := range f.forms {
		if got := r.Form.Get("time"); got != strconv.FormatInt(testNow.Unix(), 10) && !strings.HasPrefix(got, strconv.FormatInt(testNow.Unix(), 10)+".") {
			t.Errorf("query time %q, want %d", got, testNow.Unix())
		}
		if r.Form.Get("timeout") == "" {
			t.Errorf("no Prometheus-side timeout on %q", r.Form.Get("query"))
		}
	}
}

func TestRangesNeverShorterThanTwoScrapes(t *testing.T) {
	p := &Prom{scrape: 10 * time.Second}
	tg := Target{Window: 5 * time.Second, Now: testNow, Since: testNow.Add(-3 * time.Second)}
	w, s := p.ranges(tg)
	if w != 20*time.Second || s != 20*time.Second {
		t.Errorf("ranges %s, %s; want 20s, 20s", w, s)
	}
	tg.Since = testNow.Add(-90*time.Second - 300*time.Millisecond)
	if _, s := p.ranges(tg); promRange(s) != "91s" {
		t.Errorf("since range %s, want 91s (rounded up)", promRange(s))
	}
}

// orsPerQuery is the fixed shape of every built-in query: the counters now,
// or a window ago, or at the canary's start. A name that escaped its string
// would add to it.
const orsPerQuery = 2

func TestHostileNamesCannotInjectPromQL(t *testing.T) {
	hostile := `x"}) or vector(1) or sum(up{a="`
	b := newBuilder(4191, member{`ns\"`, hostile, "s\n"})
	for _, q := range []string{b.counts("60s", "91s"), b.buckets("60s", "91s")} {
		if err := lintPromQL(q); err != nil {
			t.Errorf("query %q: %v", q, err)
		}
		if !strings.Contains(q, `deployment=~`+strconv.Quote(regexp.QuoteMeta("s\n")+"|"+regexp.QuoteMeta(hostile))) {
			t.Errorf("query %q does not carry the names as one quoted, literal-matching expression", q)
		}
		if code := stripStrings(q); strings.Contains(code, "vector") || strings.Count(code, " or ") != orsPerQuery {
			t.Errorf("query %q: the name leaked out of its string: %s", q, code)
		}
	}
}

func TestNumbersJSONRoundTripsNaN(t *testing.T) {
	b, err := json.Marshal(Numbers{Requests: 12, SuccessRate: math.NaN(), LatencyP99Ms: 3.5})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"requests":12,"successRate":null,"p99Ms":3.5}` {
		t.Errorf("json %s", b)
	}
	var n Numbers
	if err := json.Unmarshal(b, &n); err != nil || n.Requests != 12 || !math.IsNaN(n.SuccessRate) || n.LatencyP99Ms != 3.5 {
		t.Errorf("back: %+v, %v", n, err)
	}
}

func TestClientSendsCredentialsAndHeaders(t *testing.T) {
	f := newFake("a", "b")
	srv := f.start(t)
	cases := []struct {
		name  string
		cfg   ClientConfig
		check func(h http.Header) string
	}{
		{"bearer token", ClientConfig{BearerToken: "s3cret"}, func(h http.Header) string {
			return expect(h.Get("Authorization"), "Bearer s3cret")
		}},
		{"basic auth and a custom header", ClientConfig{Username: "u", Password: "p", Headers: map[string]string{"X-Scope-OrgID": "team-a"}},
			func(h http.Header) string {
				return expect(h.Get("Authorization"), "Basic dTpw") + expect(h.Get("X-Scope-OrgID"), "team-a")
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Address = srv.URL
			p, err := NewPrometheus(Config{Client: tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			last := f.forms[len(f.forms)-1]
			f.mu.Unlock()
			if msg := tc.check(last.Header); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func expect(got, want string) string {
	if got != want {
		return "got " + strconv.Quote(got) + ", want " + strconv.Quote(want) + "; "
	}
	return ""
}

func TestNewPrometheusRejectsBadConfig(t *testing.T) {
	bad := []Config{
		{},
		{Client: ClientConfig{Address: "http://p", BearerToken: "a", BearerTokenFile: "/f"}},
		{Client: ClientConfig{Address: "http://p", CertFile: "/c"}},
		{Client: ClientConfig{Address: "http://p", CAFile: "/does/not/exist"}},
		{Client: ClientConfig{Address: "http://p"}, Judge: JudgeConfig{Alpha: 2}},
		{Client: ClientConfig{Address: "http://p"}, Checks: []Check{{Name: "x", Query: "up"}}},
	}
	for i, c := range bad {
		if _, err := NewPrometheus(c); err == nil {
			t.Errorf("config %d: no error", i)
		}
	}
}

// stripStrings removes PromQL string literals, leaving the code around them.
func stripStrings(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '"' {
			end := endOfString(q, i)
			if end < 0 {
				return b.String() + "<unterminated>"
			}
			b.WriteString(`""`)
			i = end
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func TestClientTLSAndTokenFile(t *testing.T) {
	f := newFake("a", "b")
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	cases := []struct {
		name    string
		cfg     ClientConfig
		wantErr string
	}{
		{"trusted through the CA file", ClientConfig{CAFile: ca, BearerTokenFile: token}, ""},
		{"insecure skip verify", ClientConfig{InsecureSkipVerify: true}, ""},
		{"unknown authority is refused", ClientConfig{}, "certificate"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(token, []byte("rotated-"+strconv.Itoa(i)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tc.cfg.Address = srv.URL
			p, err := NewPrometheus(Config{Client: tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Validate(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate: %v, want an error about %q", err, tc.wantErr)
			}
			if tc.cfg.BearerTokenFile != "" {
				f.mu.Lock()
				got := f.forms[len(f.forms)-1].Header.Get("Authorization")
				f.mu.Unlock()
				if want := "Bearer rotated-" + strconv.Itoa(i); got != want {
					t.Errorf("Authorization %q, want %q (the file is read at each request)", got, want)
				}
			}
		})
	}
}

func TestScrapedCountsThePodsAndSaysWhenTheLatestWasScraped(t *testing.T) {
	f := newFake("foo-canary", "foo")
	f.custom["timestamp(up{"] = `{"resultType":"vector","result":[` +
		`{"metric":{"pod":"a"},"value":[1700000010,"1700000007.25"]},` +
		`{"metric":{"pod":"b"},"value":[1700000010,"1700000009.5"]}]}`
	srv := f.start(t)
	p, err := NewPrometheus(Config{Client: ClientConfig{Address: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	n, last, err := p.Scraped(t.Context(), "shop", "foo-canary", "")
	if err != nil || n != 2 || !last.Equal(time.UnixMilli(1700000009500)) {
		t.Fatalf("Scraped: %d pods, last %s, err %v; want 2 pods, last at 1700000009.5", n, last, err)
	}
	if q := f.queries[len(f.queries)-1]; q != `timestamp(up{namespace="shop",deployment="foo-canary"}) and up{namespace="shop",deployment="foo-canary"} == 1` {
		t.Errorf("query %s", q)
	}
	delete(f.custom, "timestamp(up{")
	if n, last, err := p.Scraped(t.Context(), "shop", "foo-canary", ""); err != nil || n != 0 || !last.IsZero() {
		t.Fatalf("nothing scraped: %d pods, last %s, err %v", n, last, err)
	}
}

// A canary rolled back a moment ago still has pods that Prometheus scrapes;
// they must not answer for the new canary's pods, which no scrape has seen.
func TestScrapedCountsOnlyTheCurrentReplicaSetsPods(t *testing.T) {
	f := newFake("foo-canary", "foo")
	f.custom["timestamp(up{"] = `{"resultType":"vector","result":[` +
		`{"metric":{"pod":"old","pod_template_hash":"aaa"},"value":[1700000010,"1700000009.5"]},` +
		`{"metric":{"pod":"new","pod_template_hash":"bbb"},"value":[1700000010,"1700000008.25"]}]}`
	srv := f.start(t)
	p, err := NewPrometheus(Config{Client: ClientConfig{Address: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	n, last, err := p.Scraped(t.Context(), "shop", "foo-canary", "bbb")
	if err != nil || n != 1 || !last.Equal(time.UnixMilli(1700000008250)) {
		t.Fatalf("the new ReplicaSet's pods: %d, last %s, err %v; want 1, its own scrape at 1700000008.25", n, last, err)
	}
	if n, _, _ := p.Scraped(t.Context(), "shop", "foo-canary", "ccc"); n != 0 {
		t.Fatalf("a ReplicaSet no scrape has seen counted %d pods", n)
	}
	// Targets without the label (a scrape job that does not copy it) count
	// as before: the gate must not wait for a label that never comes.
	f.custom["timestamp(up{"] = `{"resultType":"vector","result":[{"metric":{"pod":"x"},"value":[1700000010,"1700000009"]}]}`
	if n, _, _ := p.Scraped(t.Context(), "shop", "foo-canary", "bbb"); n != 1 {
		t.Fatalf("unlabelled targets: %d pods, want 1", n)
	}
}
