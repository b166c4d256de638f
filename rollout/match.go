package rollout

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A/B mode. With canaryd.io/match the canary is not given a share of all
// requests but exactly the requests that match one condition (a header, a
// cookie or a path prefix); every other request goes to stable. Instead of
// weight steps the rollout runs canaryd.io/iterations iterations, each at
// least interval long and judged by the same analysis (which then measures
// only the matched traffic, because only that reaches the canary), and is
// promoted after the last one like any rollout.
//
// It fits the state machine unchanged: an A/B rollout is a weighted rollout
// whose steps are all the notional weight ABWeight (three iterations are the
// steps 100m,100m,100m). Everything that gates on weights — canary sizing,
// "the split shows the step", capacity guards, promotion, roll-back — works
// as it does for weights. The router tells the two apart with RouteMatch: an
// A/B spec at a weight strictly between 0 and 1000m is written as a match
// rule to the canary plus a default rule to stable, and read back as
// ABWeight; 0 (idle, roll-back) and 1000m (promotion) stay plain weights.
// Only the HTTPRoute router can express matches.

// Annotations of A/B mode.
const (
	KeyMatch      = Prefix + "match"
	KeyIterations = Prefix + "iterations"
)

// ABWeight is the canary weight (milli) an A/B iteration is recorded at. No
// share of traffic follows from it — the match decides — but the canary is
// sized as for a 10 % step: ceil(0.1 × stable replicas), at least 1.
const ABWeight = 100

// DefaultIterations is how many iterations an A/B rollout runs when
// canaryd.io/iterations is not set: as many as the default weight steps.
const DefaultIterations = 3

// Kinds of Match.
const (
	MatchHeader = "header"
	MatchCookie = "cookie"
	MatchPath   = "path"
)

// Match is the condition that sends a request to the canary in A/B mode.
type Match struct {
	Kind  string // MatchHeader, MatchCookie or MatchPath
	Name  string // header or cookie name; empty for a path
	Value string // header or cookie value (exact), or the path prefix
}

func (m Match) String() string {
	if m.Kind == MatchPath {
		return MatchPath + ":" + m.Value
	}
	return m.Kind + ":" + m.Name + "=" + m.Value
}

// CookieRegex is the header regular expression that matches a Cookie header
// carrying name=value among its cookies: "a=1; beta=yes; b=2" contains
// beta=yes, while "xbeta=yes" and "beta=yesno" do not. The value is quoted,
// so it matches literally.
func (m Match) CookieRegex() string {
	return `(^|;\s*)` + regexp.QuoteMeta(m.Name) + "=" + regexp.QuoteMeta(m.Value) + `(;|$)`
}

// RouteMatch is the match rule the route carries at canary weight milli: the
// spec's match while an A/B rollout has the canary under analysis (weight
// strictly between 0 and 1000m), otherwise nil (a plain weighted route).
func (s Spec) RouteMatch(milli int) *Match {
	if s.Match == nil || milli <= 0 || milli >= 1000 {
		return nil
	}
	return s.Match
}

const matchForms = `one of "header:<name>=<value>", "cookie:<name>=<value>" or "path:/<prefix>"`

// token is an HTTP header or cookie name (RFC 7230 tchar), as the Gateway
// API's validation accepts it.
var token = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+\-.^_` + "`" + `|~]+$`)

// ParseMatch reads canaryd.io/match. The errors say what is wrong and which
// forms are allowed.
func ParseMatch(v string) (*Match, error) {
	kind, rest, ok := strings.Cut(v, ":")
	if !ok {
		return nil, errors.New(matchForms)
	}
	m := &Match{Kind: strings.ToLower(strings.TrimSpace(kind))}
	switch m.Kind {
	case MatchHeader, MatchCookie:
		name, value, ok := strings.Cut(rest, "=")
		m.Name, m.Value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || m.Name == "" || m.Value == "" {
			return nil, fmt.Errorf("%s needs a name and a value, %s:<name>=<value>; %s", m.Kind, m.Kind, matchForms)
		}
		if !token.MatchString(m.Name) || len(m.Name) > 256 {
			return nil, fmt.Errorf("%s name %q: at most 256 letters, digits and !#$%%&'*+-.^_`|~", m.Kind, m.Name)
		}
		if m.Kind == MatchHeader {
			m.Name = strings.ToLower(m.Name) // header names are case-insensitive
			if len(m.Value) > 4096 || strings.ContainsAny(m.Value, "\r\n\x00") {
				return nil, fmt.Errorf("header value: at most 4096 characters on one line")
			}
		} else if !cookieValue.MatchString(m.Value) || len(m.Value) > 1024 {
			return nil, fmt.Errorf("cookie value %q: at most 1024 characters without spaces, quotes, commas, semicolons or backslashes", m.Value)
		}
	case MatchPath:
		m.Value = strings.TrimSpace(rest)
		if err := checkPathPrefix(m.Value); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown kind %q; %s", m.Kind, matchForms)
	}
	return m, nil
}

// cookieValue: RFC 6265 cookie-octets.
var cookieValue = regexp.MustCompile(`^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$`)

// checkPathPrefix applies the Gateway API's rules for a PathPrefix value, so
// that a bad prefix is refused here, naming the annotation, rather than by
// the API server on every write of the route.
func checkPathPrefix(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q must start with /", p)
	case len(p) > 1024:
		return errors.New("path: at most 1024 characters")
	case strings.ContainsAny(p, "#?\x00 "):
		return fmt.Errorf("path %q: no '#', '?' or spaces", p)
	case strings.Contains(p, "//"), strings.Contains(p, "/./"), strings.Contains(p, "/../"),
		strings.HasSuffix(p, "/."), strings.HasSuffix(p, "/.."):
		return fmt.Errorf("path %q: no empty, '.' or '..' segments", p)
	case strings.Contains(strings.ToLower(p), "%2f"):
		return fmt.Errorf("path %q: no encoded '/' (%%2F)", p)
	}
	return nil
}

// parseAB reads one of A/B mode's annotations into s.
func (s *Spec) parseAB(key, v string) error {
	switch key {
	case KeyMatch:
		m, err := ParseMatch(v)
		if err != nil {
			return &FieldError{Key: key, Value: v, Allowed: err.Error()}
		}
		s.Match = m
	case KeyIterations:
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return &FieldError{Key: key, Value: v, Allowed: "an integer from 1 to 100"}
		}
		s.Iterations = n
	}
	return nil
}

// finishAB checks that A/B mode's annotations fit the rest of the
// configuration and turns the iterations into steps. It runs after every
// annotation has been read, so the errors can name both keys of a conflict.
func (s *Spec) finishAB(annotations map[string]string) []error {
	_, iterations := annotations[KeyIterations]
	if s.Match == nil {
		if iterations {
			return []error{&FieldError{Key: KeyIterations, Value: annotations[KeyIterations],
				Allowed: "only used in A/B mode: set " + KeyMatch + " too, or use " + KeySteps + " for a weighted rollout"}}
		}
		return nil
	}
	var errs []error
	if s.Router != RouterHTTPRoute {
		errs = append(errs, &FieldError{Key: KeyMatch, Value: annotations[KeyMatch],
			Allowed: fmt.Sprintf("A/B routing needs %s: %q; router %q can only split by weight", KeyRouter, RouterHTTPRoute, s.Router)})
	}
	if _, ok := annotations[KeySteps]; ok {
		errs = append(errs, &FieldError{Key: KeySteps, Value: annotations[KeySteps],
			Allowed: "not used in A/B mode (" + KeyMatch + " is set): set " + KeyIterations + " instead"})
	}
	n := s.Iterations
	if n == 0 {
		n = DefaultIterations
	}
	s.Steps = make([]int, n)
	for i := range s.Steps {
		s.Steps[i] = ABWeight
	}
	return errs
}
