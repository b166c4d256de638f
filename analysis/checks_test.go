package analysis

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseChecksErrorsNameTheCheck(t *testing.T) {
	cases := []struct {
		name, doc string
		wantErr   []string
	}{
		{"template syntax error", `
checks:
  - name: broken
    query: 'sum(rate(x{namespace="{{ .namespace }"}[1m]))'
    max: 1`, []string{`custom check "broken": template:`}},
		{"unknown variable", `
checks:
  - name: typo
    query: 'sum(x{ns="{{ .namespac }}"})'
    max: 1`, []string{`custom check "typo": template:`, "namespac"}},
		{"unbalanced PromQL after rendering", `
checks:
  - name: unbalanced
    query: 'sum(rate(x{deployment="{{ .canary }}"}[{{ .interval }}])'
    max: 1`, []string{`custom check "unbalanced"`, `unclosed '('`}},
		{"unterminated string", `
checks:
  - name: quote
    query: 'x{a="b}'
    max: 1`, []string{`custom check "quote"`, "unterminated string"}},
		{"no bounds", `
checks:
  - name: unbounded
    query: up`, []string{`custom check "unbounded": set min, max or both`}},
		{"min above max", `
checks:
  - name: inverted
    query: up
    min: 5
    max: 1`, []string{`custom check "inverted": min 5 > max 1`}},
		{"a name that cannot be listed in the annotation", `
checks:
  - name: "a,b"
    query: up
    max: 1`, []string{`custom check "a,b": name`}},
		{"duplicate names", `
checks:
  - {name: dup, query: up, max: 1}
  - {name: dup, query: up, max: 2}`, []string{`custom check "dup": defined twice`}},
		{"unknown field", `
checks:
  - {name: x, query: up, maximum: 1}`, []string{`custom checks:`, `unknown field "maximum"`}},
		{"empty query", `
checks:
  - {name: blank, query: "  ", max: 1}`, []string{`custom check "blank": query is empty`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseChecks([]byte(tc.doc))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestChecksRenderEveryVariableEscaped(t *testing.T) {
	checks, err := ParseChecks([]byte(`
checks:
  - name: all-vars
    query: '{{.namespace}}|{{.deployment}}|{{.canary}}|{{.stable}}|{{.interval}}'
    min: 0
`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := checks[0].render(Target{Namespace: `n"s`, Canary: `c\x`, Stable: "s", Window: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := `n\"s|c\\x|c\\x|s|1m30s`; got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
}

func TestLoadChecksFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checks.yaml")
	doc := `checks:
  - name: canary-5xx
    description: share of 5xx answers
    query: |
      sum(rate(response_total{namespace="{{.namespace}}",deployment="{{.canary}}",classification="failure"}[{{.interval}}]))
        or vector(0)
    max: 0.5
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	checks, err := LoadChecks(path)
	if err != nil || len(checks) != 1 || *checks[0].Max != 0.5 || checks[0].Min != nil {
		t.Fatalf("got %+v, %v", checks, err)
	}
	if _, err := LoadChecks(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestValidateNamesTheCheckPrometheusRejects(t *testing.T) {
	f := newFake("validate-canary", "validate")
	f.fail = func(q string) (int, string) {
		if strings.Contains(q, "nonexistent_fn") {
			return 400, `{"status":"error","errorType":"bad_data","error":"1:1: parse error: unknown function with name \"nonexistent_fn\""}`
		}
		return 0, ""
	}
	srv := f.start(t)
	checks, err := ParseChecks([]byte(`
checks:
  - {name: good, query: 'sum(up{namespace="{{.namespace}}"})', max: 1}
  - {name: bad-fn, query: 'nonexistent_fn(up[{{.interval}}])', max: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProm(t, srv.URL, func(c *Config) { c.Checks = checks })
	err = p.Validate(context.Background())
	if err == nil {
		t.Fatal("Validate: no error")
	}
	for _, want := range []string{`custom check "bad-fn"`, "bad_data", "unknown function"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `"good"`) {
		t.Errorf("error %q blames the good check", err)
	}
}

func TestLintPromQL(t *testing.T) {
	good := []string{
		`sum(rate(x{a="}",b='{'}[1m])) by (le)`,
		"x{a=`\\`}",
		`x # a comment with ( and "` + "\n" + `+ y`,
		`x{a="\""}`,
	}
	for _, q := range good {
		if err := lintPromQL(q); err != nil {
			t.Errorf("%q: %v", q, err)
		}
	}
	bad := []string{`sum(x`, `x}`, `x{a="b"]`, `x{a="b}`, `rate(x[1m)]`}
	for _, q := range bad {
		if err := lintPromQL(q); err == nil {
			t.Errorf("%q: no error", q)
		}
	}
}
