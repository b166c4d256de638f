package analysis

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseChecks: whatever the file says, parsing returns checks or an
// error, never panics; every check it accepts renders for any target, and a
// rendered query keeps hostile label values inside their strings.
func FuzzParseChecks(f *testing.F) {
	seeds := []string{
		"checks:\n  - {name: a, query: 'sum(up{namespace=\"{{.namespace}}\"})', max: 1}\n",
		"checks:\n  - name: b\n    query: 'rate(x{deployment=\"{{.canary}}\"}[{{.interval}}])'\n    min: 0\n    max: 2\n",
		"checks:\n  - {name: c, query: '{{if .stable}}up{{end}}', min: -1}\n",
		"checks:\n  - {name: d, query: '{{ .namespace }', max: 1}\n",
		"checks: []\n",
		"checks:\n  - {name: e, query: \"x{a=`{{.stable}}`}\", max: 1}\n",
		"{",
		"checks:\n  - {name: f, query: '{{printf \"%s\" .canary}}', max: 1e308}\n",
	}
	for _, s := range seeds {
		f.Add(s, `x"}) or vector(1) #`)
	}
	f.Fuzz(func(t *testing.T, doc, name string) {
		checks, err := ParseChecks([]byte(doc))
		if err != nil {
			if !strings.Contains(err.Error(), "custom check") {
				t.Fatalf("error does not say it is about custom checks: %v", err)
			}
			return
		}
		tg := Target{Namespace: name, Canary: name, Stable: name, Window: time.Minute}
		for i := range checks {
			c := &checks[i]
			if c.Min == nil && c.Max == nil {
				t.Fatalf("check %q accepted without bounds", c.Name)
			}
			q, err := c.render(tg)
			if err != nil {
				// a template may branch on its values; that is the
				// author's business, but it must fail with the name
				if !strings.Contains(err.Error(), strconv.Quote(c.Name)) {
					t.Fatalf("render error without the check's name: %v", err)
				}
				continue
			}
			if q == "" {
				t.Fatalf("check %q rendered an empty query", c.Name)
			}
		}
	})
}

// FuzzQueryEscaping: no label value, however hostile, changes the shape of
// the built-in queries: they stay balanced and the values stay in strings.
func FuzzQueryEscaping(f *testing.F) {
	for _, s := range []string{"foo", `x"}) or vector(1) #`, "a\nb", `\`, "`", "'", "\x00\xff", "日本"} {
		f.Add(s, "stable")
	}
	f.Fuzz(func(t *testing.T, canary, stable string) {
		b := newBuilder(4191, member{canary + stable, canary, stable})
		for _, q := range []string{b.counts("60s", "91s"), b.buckets("60s", "91s")} {
			if err := lintPromQL(q); err != nil {
				t.Fatalf("%q: %v", q, err)
			}
			if code := stripStrings(q); strings.Count(code, " or ") != orsPerQuery {
				t.Fatalf("%q: shape changed: %s", q, code)
			}
		}
		for _, v := range []string{canary, stable} {
			back, err := strconv.Unquote(quote(v))
			if err != nil || back != v {
				t.Fatalf("quote(%q) does not round-trip: %q, %v", v, back, err)
			}
		}
	})
}
