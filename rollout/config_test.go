package rollout

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSpecOverlaysAnnotationsOnDefaults(t *testing.T) {
	_, err := ParseSpec(map[string]string{
		KeySteps: "5,10.5, 50", KeyInterval: "30s", KeyMaxFailures: "4", KeyMinSuccessRate: "99.5%",
		KeyMaxLatencyP99: "250ms", KeyMinRequests: "0", KeyOnInconclusive: "rollback", KeyManualPromotion: "true",
		KeyService: "web", KeyRouter: "httproute", "app.kubernetes.io/name": "ignored",
	}, DefaultSpec())
	if err == nil {
		t.Fatal("10.5% cannot be expressed by a percent router; want an error")
	}
	s, err := ParseSpec(map[string]string{
		KeySteps: "5,10.5, 50", KeyInterval: "30s", KeyMaxFailures: "4", KeyMinSuccessRate: "99.5%",
		KeyMaxLatencyP99: "250ms", KeyMinRequests: "0", KeyOnInconclusive: "rollback", KeyManualPromotion: "true",
		KeyService: "web",
	}, DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultSpec()
	want.Steps, want.Interval, want.MaxFailures, want.MinSuccessRate = []int{50, 105, 500}, 30*time.Second, 4, 99.5
	want.MaxLatencyP99, want.MinRequests, want.OnInconclusive, want.ManualPromotion, want.Service =
		250*time.Millisecond, 0, "rollback", true, "web"
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
}

func TestParseSpecNamesTheKeyAndWhatIsAllowed(t *testing.T) {
	for name, tc := range map[string]struct{ key, value, allowed string }{
		"unknown router":             {KeyRouter, "istio", `"smi", "httproute"`},
		"steps not increasing":       {KeySteps, "100m,100m", "strictly increasing"},
		"steps over 100 %":           {KeySteps, "500m,1200m", "at most 100%"},
		"negative step":              {KeySteps, "-10", "above 0"},
		"empty steps":                {KeySteps, "", "comma-separated"},
		"step with garbage":          {KeySteps, "10,abc", "milli"},
		"bad interval":               {KeyInterval, "soon", "duration"},
		"interval too short":         {KeyInterval, "10ms", "from 1s"},
		"max-failures zero":          {KeyMaxFailures, "0", "1 to 1000"},
		"max-failures overflow":      {KeyMaxFailures, "99999999999999999999", "1 to 1000"},
		"success rate over 100":      {KeyMinSuccessRate, "101", "0 to 100"},
		"success rate NaN":           {KeyMinSuccessRate, "NaN", "0 to 100"},
		"on-inconclusive":            {KeyOnInconclusive, "panic", `"hold", "rollback"`},
		"manual-promotion":           {KeyManualPromotion, "sure", `"true" or "false"`},
		"unknown command":            {Prefix + "promot", "true", "not a canaryd annotation"},
		"service name":               {KeyService, "Web_Frontend", "DNS-1035"},
		"check name with PromQL":     {KeyAnalysis, `x"}[5m]) or vector(1)`, "check names"},
		"window without duration":    {KeyWindow, "0 9 * * 1-5", "<cron> <duration>"},
		"window with a bad cron":     {KeyWindow, "61 9 * * * 1h", "bad cron"},
		"window with a bad timezone": {KeyWindow, "CRON_TZ=Nowhere/Void 0 9 * * * 1h", "bad cron"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSpec(map[string]string{tc.key: tc.value}, DefaultSpec())
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			if fe.Key != tc.key || !strings.Contains(err.Error(), tc.allowed) {
				t.Fatalf("error %q: want key %s and %q", err, tc.key, tc.allowed)
			}
		})
	}
}

func TestParseSpecReportsEveryBadKeyAtOnce(t *testing.T) {
	_, err := ParseSpec(map[string]string{KeyRouter: "x", KeyInterval: "y", KeySteps: "z"}, DefaultSpec())
	for _, k := range []string{KeyRouter, KeyInterval, KeySteps} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("%q does not name %s", err, k)
		}
	}
}

func TestCustomChecksMustBeDefined(t *testing.T) {
	d := DefaultSpec()
	d.KnownChecks = []string{"error-budget"}
	if _, err := ParseSpec(map[string]string{KeyAnalysis: "error-budget"}, d); err != nil {
		t.Fatal(err)
	}
	_, err := ParseSpec(map[string]string{KeyAnalysis: "error-budget,latency-slo"}, d)
	if err == nil || !strings.Contains(err.Error(), `unknown check "latency-slo"; defined: error-budget`) {
		t.Fatalf("err %v", err)
	}
}

func TestNeedKeepsTheLoadPerPodOfStable(t *testing.T) {
	for _, tc := range []struct {
		w    int
		r    int32
		want int32
	}{{100, 4, 1}, {200, 4, 1}, {300, 4, 2}, {500, 4, 2}, {1000, 4, 4}, {100, 1, 1}, {1, 0, 1}, {500, 31, 16}} {
		if got := need(tc.w, tc.r); got != tc.want {
			t.Errorf("need(%dm, %d) = %d, want %d", tc.w, tc.r, got, tc.want)
		}
	}
}

func TestWindowOpen(t *testing.T) {
	w, err := ParseWindow("CRON_TZ=Europe/Paris 0 9 * * 1-5 8h")
	if err != nil {
		t.Fatal(err)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, tc := range []struct {
		at   time.Time
		open bool
		next time.Time
	}{
		{time.Date(2026, 11, 25, 8, 59, 0, 0, paris), false, time.Date(2026, 11, 25, 9, 0, 0, 0, paris)},
		{time.Date(2026, 11, 25, 9, 0, 0, 0, paris), true, time.Date(2026, 11, 25, 17, 0, 0, 0, paris)},
		{time.Date(2026, 11, 25, 16, 59, 0, 0, paris), true, time.Date(2026, 11, 25, 17, 0, 0, 0, paris)},
		{time.Date(2026, 11, 25, 17, 0, 0, 0, paris), false, time.Date(2026, 11, 26, 9, 0, 0, 0, paris)},
		{time.Date(2026, 11, 28, 10, 0, 0, 0, paris), false, time.Date(2026, 11, 30, 9, 0, 0, 0, paris)}, // Saturday
	} {
		open, next := w.Open(tc.at.UTC())
		if open != tc.open || !next.Equal(tc.next) {
			t.Errorf("at %s: open %v next %s, want %v %s", tc.at, open, next, tc.open, tc.next)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"100m,200m", "10,20,50", "1m", "0 9 * * 1-5 8h", "CRON_TZ=UTC @daily 1h", "", "∞", "1e309",
		"header:x-canary=always", "cookie:user=beta", "path:/v2", "https://gate.example/pre", "3"} {
		f.Add(s)
	}
	keys := []string{KeySteps, KeyInterval, KeyMaxFailures, KeyMinSuccessRate, KeyMaxLatencyP99, KeyWindow, KeyAnalysis, KeyService,
		KeyMatch, KeyIterations, KeyOutsideWindow, KeyPreRollout, KeyConfirmPromotion, KeyPostRollout, KeyRouter, KeyMinRequests}
	f.Fuzz(func(t *testing.T, v string) {
		for _, k := range keys {
			ann := map[string]string{k: v}
			if k == KeyMatch || k == KeyIterations {
				ann[KeyRouter] = RouterHTTPRoute
			}
			s, err := ParseSpec(ann, DefaultSpec())
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), k) {
					t.Fatalf("%s=%q: error %v does not name the key", k, v, err)
				}
				continue
			}
			for i, w := range s.Steps {
				if s.Match != nil { // A/B: N iterations at the notional weight
					if w != ABWeight {
						t.Fatalf("%s=%q: A/B step %d", k, v, w)
					}
					continue
				}
				if w <= 0 || w > 1000 || (i > 0 && w <= s.Steps[i-1]) {
					t.Fatalf("%s=%q accepted bad steps %v", k, v, s.Steps)
				}
			}
		}
	})
}
