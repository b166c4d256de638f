package rollout

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseMatch(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want *Match
		err  string // substring of the error; empty: no error
	}{
		"a header, its name lowercased":     {in: "header:X-Canary=always", want: &Match{Kind: MatchHeader, Name: "x-canary", Value: "always"}},
		"spaces around the parts are cut":   {in: " header : x-canary = always ", want: &Match{Kind: MatchHeader, Name: "x-canary", Value: "always"}},
		"a header value may hold = and ;":   {in: "header:x-user=a=b;c", want: &Match{Kind: MatchHeader, Name: "x-user", Value: "a=b;c"}},
		"a cookie keeps its name's case":    {in: "cookie:Beta=yes", want: &Match{Kind: MatchCookie, Name: "Beta", Value: "yes"}},
		"a path prefix":                     {in: "path:/beta", want: &Match{Kind: MatchPath, Value: "/beta"}},
		"the kind is case-insensitive":      {in: "PATH:/api/v2", want: &Match{Kind: MatchPath, Value: "/api/v2"}},
		"no kind":                           {in: "x-canary=always", err: `one of "header:<name>=<value>"`},
		"an unknown kind":                   {in: "query:beta=1", err: `unknown kind "query"`},
		"a header without a value":          {in: "header:x-canary", err: "header needs a name and a value"},
		"a header with an empty value":      {in: "header:x-canary=", err: "header needs a name and a value"},
		"a header name with a space":        {in: "header:x canary=1", err: `header name "x canary"`},
		"a header value over two lines":     {in: "header:x=a\nb", err: "one line"},
		"a cookie value with a semicolon":   {in: "cookie:beta=a;b", err: "cookie value"},
		"a cookie value with a space":       {in: "cookie:beta=a b", err: "cookie value"},
		"a relative path":                   {in: "path:beta", err: "must start with /"},
		"a path with an empty segment":      {in: "path:/a//b", err: "segments"},
		"a path with a dot-dot segment":     {in: "path:/a/..", err: "segments"},
		"a path with an encoded slash":      {in: "path:/a%2Fb", err: "%2F"},
		"a path with a fragment":            {in: "path:/a#b", err: "'#'"},
		"a header name over 256 letters":    {in: "header:" + strings.Repeat("x", 257) + "=1", err: "at most 256"},
		"a path over 1024 characters":       {in: "path:/" + strings.Repeat("a", 1024), err: "1024"},
		"a cookie with a name but no value": {in: "cookie:beta", err: "cookie needs a name and a value"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseMatch(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMatch(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseMatch(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestTheCookieRegexMatchesOnlyThatCookie(t *testing.T) {
	m := Match{Kind: MatchCookie, Name: "beta", Value: "a.b"}
	re := regexp.MustCompile(m.CookieRegex())
	for header, want := range map[string]bool{
		"beta=a.b":             true,
		"x=1; beta=a.b":        true,
		"x=1;beta=a.b; y=2":    true,
		"beta=a.b;y=2":         true,
		"xbeta=a.b":            false,
		"beta=a.bc":            false,
		"beta=aXb":             false, // the dot is literal
		"x=beta=a.b":           false,
		"theme=dark; beta=a.c": false,
	} {
		if got := re.MatchString(header); got != want {
			t.Errorf("Cookie: %q matched %v, want %v", header, got, want)
		}
	}
}

func abAnnotations(extra map[string]string) map[string]string {
	a := map[string]string{KeyRouter: RouterHTTPRoute, KeyMatch: "header:x-canary=always"}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

func TestABModeTurnsIterationsIntoStepsAtTheNotionalWeight(t *testing.T) {
	s, err := ParseSpec(abAnnotations(nil), DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{ABWeight, ABWeight, ABWeight}; !reflect.DeepEqual(s.Steps, want) {
		t.Errorf("default iterations: steps %v, want %v", s.Steps, want)
	}
	s, err = ParseSpec(abAnnotations(map[string]string{KeyIterations: "5"}), DefaultSpec())
	if err != nil || len(s.Steps) != 5 || s.Iterations != 5 {
		t.Fatalf("5 iterations: %v steps, %v", s.Steps, err)
	}
	if m := s.RouteMatch(ABWeight); m == nil || m.String() != "header:x-canary=always" {
		t.Errorf("RouteMatch at an iteration: %v", m)
	}
	for _, w := range []int{0, 1000} {
		if m := s.RouteMatch(w); m != nil {
			t.Errorf("RouteMatch(%d) = %v: idle and promotion routes are plain weights", w, m)
		}
	}
	plain, _ := ParseSpec(map[string]string{KeyRouter: RouterHTTPRoute}, DefaultSpec())
	if m := plain.RouteMatch(200); m != nil {
		t.Errorf("a weighted spec has a route match: %v", m)
	}
}

func TestABModeConfigErrorsNameTheKeys(t *testing.T) {
	for name, tc := range map[string]struct {
		ann  map[string]string
		keys []string // every one must be named by some error
		text string
	}{
		"A/B with the SMI router": {
			ann:  map[string]string{KeyRouter: RouterSMI, KeyMatch: "header:x-canary=always"},
			keys: []string{KeyMatch}, text: KeyRouter,
		},
		"A/B with the default router": {
			ann:  map[string]string{KeyMatch: "cookie:beta=1"},
			keys: []string{KeyMatch}, text: `"smi" can only split by weight`,
		},
		"iterations without a match": {
			ann:  map[string]string{KeyRouter: RouterHTTPRoute, KeyIterations: "3"},
			keys: []string{KeyIterations}, text: KeyMatch,
		},
		"steps in A/B mode": {
			ann:  abAnnotations(map[string]string{KeySteps: "10,20"}),
			keys: []string{KeySteps}, text: KeyIterations,
		},
		"zero iterations": {
			ann:  abAnnotations(map[string]string{KeyIterations: "0"}),
			keys: []string{KeyIterations}, text: "from 1 to 100",
		},
		"a bad match and a bad interval together": {
			ann:  abAnnotations(map[string]string{KeyMatch: "header:x", KeyInterval: "soon"}),
			keys: []string{KeyMatch, KeyInterval}, text: "header:<name>=<value>",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSpec(tc.ann, DefaultSpec())
			if err == nil {
				t.Fatal("no error")
			}
			for _, k := range tc.keys {
				var named bool
				for _, e := range unjoin(err) {
					var fe *FieldError
					if errors.As(e, &fe) && fe.Key == k {
						named = true
					}
				}
				if !named {
					t.Errorf("no error names %s: %v", k, err)
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestAnABRolloutRunsItsIterationsAtOneWeightAndIsPromoted(t *testing.T) {
	w := adopted(t, abAnnotations(map[string]string{KeyIterations: "2"}))
	start := w.now
	w.bump("r2")
	var weights []int
	end := w.now.Add(5 * time.Minute)
	for ; w.status().Phase != PhaseSucceeded && w.now.Before(end); w.now = w.now.Add(time.Second) {
		w.tick()
		if w.weight != nil && (len(weights) == 0 || weights[len(weights)-1] != *w.weight) {
			weights = append(weights, *w.weight)
		}
	}
	if st := w.status(); st.Phase != PhaseSucceeded || st.StableRevision != "r2" {
		t.Fatalf("not promoted: %+v", st)
	}
	if want := []int{0, ABWeight, 1000, 0}; !reflect.DeepEqual(weights, want) {
		t.Errorf("weights %v, want %v", weights, want)
	}
	// Two iterations of 10 s each, each judged at its end.
	if took := w.now.Sub(start); took < 20*time.Second || took > 35*time.Second {
		t.Errorf("A/B rollout took %s, want 20–35 s for 2 iterations of 10 s", took)
	}
	advanced := 0
	for _, e := range w.events {
		if e.Reason == "StepAdvanced" {
			advanced++
		}
	}
	if advanced != 2 {
		t.Errorf("%d StepAdvanced events, want one per iteration: %v", advanced, w.reasons())
	}
}
