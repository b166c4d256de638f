package analysis

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

// Check is one named custom check: a PromQL template whose value must lie
// within [Min, Max] (either may be absent, not both).
//
// The template is Go text/template with these variables, each already
// escaped for use inside a double-quoted PromQL string:
//
//	{{ .namespace }}   the Deployment's namespace
//	{{ .deployment }}  the canary Deployment (same as .canary)
//	{{ .canary }}      e.g. foo-canary
//	{{ .stable }}      e.g. foo
//	{{ .interval }}    the analysis window as a PromQL duration, e.g. 1m
//
// The query must return one number (a scalar or a one-element vector). No
// result at all is an Error verdict, not a pass: write `… or vector(0)` when
// "no series" means zero.
type Check struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
	// Description is shown nowhere yet; it is for the config's readers.
	Description string `json:"description,omitempty"`

	tmpl *template.Template
}

// checksFile is the shape of the custom checks file.
type checksFile struct {
	Checks []Check `json:"checks"`
}

// checkName: check names are listed in the canaryd.io/analysis annotation,
// comma-separated, so they have no commas or spaces.
var checkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// LoadChecks reads and validates a custom checks file:
//
//	checks:
//	  - name: canary-5xx-share
//	    query: |
//	      sum(rate(response_total{namespace="{{.namespace}}",deployment="{{.canary}}",
//	        direction="inbound",classification="failure"}[{{.interval}}])) or vector(0)
//	    max: 0.5
func LoadChecks(path string) ([]Check, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading custom checks: %w", err)
	}
	checks, err := ParseChecks(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return checks, nil
}

// ParseChecks parses and validates a custom checks document (see LoadChecks):
// unknown fields, bad names, duplicates, missing bounds, template syntax,
// rendering with sample values and PromQL delimiters are all checked here,
// each error naming the check. A dry query against Prometheus is
// Prom.Validate's job.
func ParseChecks(data []byte) ([]Check, error) {
	var f checksFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("custom checks: %w", err)
	}
	if err := compileChecks(f.Checks); err != nil {
		return nil, err
	}
	return f.Checks, nil
}

// compileChecks validates checks in place and parses their templates.
func compileChecks(checks []Check) error {
	seen := map[string]bool{}
	var errs []error
	for i := range checks {
		c := &checks[i]
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("custom check %q: defined twice", c.Name))
			continue
		}
		seen[c.Name] = true
		if err := c.compile(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// compile validates c and parses its template.
func (c *Check) compile() error {
	if !checkName.MatchString(c.Name) {
		return fmt.Errorf("custom check %q: name must be 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit", c.Name)
	}
	if strings.TrimSpace(c.Query) == "" {
		return fmt.Errorf("custom check %q: query is empty", c.Name)
	}
	if c.Min == nil && c.Max == nil {
		return fmt.Errorf("custom check %q: set min, max or both", c.Name)
	}
	for _, b := range []*float64{c.Min, c.Max} {
		if b != nil && math.IsNaN(*b) {
			return fmt.Errorf("custom check %q: a bound is NaN", c.Name)
		}
	}
	if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
		return fmt.Errorf("custom check %q: min %v > max %v", c.Name, *c.Min, *c.Max)
	}
	t, err := template.New(c.Name).Option("missingkey=error").Parse(c.Query)
	if err != nil {
		return fmt.Errorf("custom check %q: template: %w", c.Name, err)
	}
	c.tmpl = t
	q, err := c.render(sampleTarget())
	if err != nil {
		return err
	}
	if err := lintPromQL(q); err != nil {
		return fmt.Errorf("custom check %q: rendered query %q: %w", c.Name, excerptString(q), err)
	}
	return nil
}

// sampleTarget is what templates are rendered with at load time and by Validate.
func sampleTarget() Target {
	return Target{Namespace: "canaryd-validate", Canary: "validate-canary", Stable: "validate", Window: time.Minute}
}

// render fills the template for t.
func (c *Check) render(t Target) (string, error) {
	if c.tmpl == nil {
		return "", fmt.Errorf("custom check %q: not compiled", c.Name)
	}
	vars := map[string]string{
		"namespace":  escape(t.Namespace),
		"deployment": escape(t.Canary),
		"canary":     escape(t.Canary),
		"stable":     escape(t.Stable),
		"interval":   promDuration(t.Window),
	}
	var b strings.Builder
	if err := c.tmpl.Execute(&b, vars); err != nil {
		return "", fmt.Errorf("custom check %q: template: %w", c.Name, err)
	}
	q := strings.TrimSpace(b.String())
	if q == "" {
		return "", fmt.Errorf("custom check %q: template renders an empty query", c.Name)
	}
	return q, nil
}

// judge says whether v is within the check's bounds.
func (c *Check) judge(v float64) (Verdict, string) {
	switch {
	case math.IsNaN(v):
		return Error, fmt.Sprintf("%s is NaN", c.Name)
	case c.Min != nil && v < *c.Min:
		return Fail, fmt.Sprintf("%s %s < min %s", c.Name, num(v), num(*c.Min))
	case c.Max != nil && v > *c.Max:
		return Fail, fmt.Sprintf("%s %s > max %s", c.Name, num(v), num(*c.Max))
	}
	return Pass, ""
}

func excerptString(s string) string {
	const max = 120
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// lintPromQL catches what a template most often gets wrong without a full
// PromQL parser (which would pull all of Prometheus into canaryd): unclosed
// or mismatched (), [], {} and unterminated string literals. Prom.Validate
// asks Prometheus itself for the rest.
func lintPromQL(q string) error {
	var stack []rune
	var open []int
	closer := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(q); i++ {
		ch := rune(q[i])
		switch ch {
		case '"', '\'', '`':
			end := endOfString(q, i)
			if end < 0 {
				return fmt.Errorf("unterminated string starting at offset %d", i)
			}
			i = end
		case '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case '(', '[', '{':
			stack = append(stack, ch)
			open = append(open, i)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != closer[ch] {
				return fmt.Errorf("unexpected %q at offset %d", ch, i)
			}
			stack, open = stack[:len(stack)-1], open[:len(open)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q at offset %d", stack[len(stack)-1], open[len(open)-1])
	}
	return nil
}

// endOfString returns the offset of the quote closing the literal opened at
// start, or -1. Backquoted strings have no escapes; the others do.
func endOfString(q string, start int) int {
	quoteCh := q[start]
	for i := start + 1; i < len(q); i++ {
		switch {
		case q[i] == '\\' && quoteCh != '`':
			i++
		case q[i] == quoteCh:
			return i
		case q[i] == '\n' && quoteCh != '`':
			return -1
		}
	}
	return -1
}
