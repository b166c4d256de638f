package rollout

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Names fixed by DESIGN.md: labels and annotations users and tools see.
const (
	Prefix = "canaryd.io/"

	LabelEnabled = Prefix + "enabled" // "true" on a Deployment opts it in
	LabelRole    = Prefix + "role"    // "canary" on canary pods
	RoleCanary   = "canary"
	LabelManaged = Prefix + "managed-by" // on every object canaryd creates; value: the Deployment's name

	AnnotationStatus   = Prefix + "status"
	AnnotationRevision = Prefix + "revision" // on foo-canary: the revision its template carries

	KeyService          = Prefix + "service"
	KeyRouter           = Prefix + "router"
	KeySteps            = Prefix + "steps"
	KeyInterval         = Prefix + "interval"
	KeyMaxFailures      = Prefix + "max-failures"
	KeyMinSuccessRate   = Prefix + "min-success-rate"
	KeyMaxLatencyP99    = Prefix + "max-latency-p99"
	KeyMinRequests      = Prefix + "min-requests"
	KeyProgressDeadline = Prefix + "progress-deadline"
	KeyOnInconclusive   = Prefix + "on-inconclusive"
	KeyAnalysis         = Prefix + "analysis"
	KeyManualPromotion  = Prefix + "manual-promotion"
	KeyWindow           = Prefix + "window"
	KeyOutsideWindow    = Prefix + "outside-window"
	KeyPreRollout       = Prefix + string(HookPreRollout)
	KeyConfirmPromotion = Prefix + string(HookConfirmPromotion)
	KeyPostRollout      = Prefix + string(HookPostRollout)
)

// Router names accepted by canaryd.io/router.
const (
	RouterSMI       = "smi"
	RouterHTTPRoute = "httproute"
)

// Spec is the rollout configuration of one Deployment: the cluster defaults
// overridden by its annotations.
type Spec struct {
	Service          string
	Router           string
	Steps            []int // canary weight per step, milli, strictly increasing, ≤ 1000
	Interval         time.Duration
	MaxFailures      int
	MinSuccessRate   float64 // percent
	MaxLatencyP99    time.Duration
	MinRequests      int
	ProgressDeadline time.Duration
	OnInconclusive   string // "hold" or "rollback"
	Analysis         []string
	ManualPromotion  bool
	Window           *Window
	// OutsideWindow: what a rollout already under way does when its window
	// closes: "finish" (default) or "hold" until it opens again.
	OutsideWindow string
	// Hooks are the lifecycle webhooks' URLs by hook.
	Hooks map[Hook]string

	// SMITotal is the weight total of the TrafficSplit version in use: 1000
	// for v1alpha1 (milli quantities), 100 for v1alpha2. Set from a flag, not
	// an annotation; steps must be representable in it.
	SMITotal int
	// KnownChecks are the custom analysis names canaryd's config defines;
	// nil means "don't validate names here".
	KnownChecks []string

	// Match turns on A/B mode (match.go); Iterations is its step count.
	Match      *Match
	Iterations int
}

// DefaultSpec is DESIGN.md's table of defaults.
func DefaultSpec() Spec {
	return Spec{
		Router:           RouterSMI,
		Steps:            []int{100, 200, 500},
		Interval:         time.Minute,
		MaxFailures:      2,
		MinSuccessRate:   99,
		MaxLatencyP99:    500 * time.Millisecond,
		MinRequests:      20,
		ProgressDeadline: 10 * time.Minute,
		OnInconclusive:   "hold",
		OutsideWindow:    "finish",
		SMITotal:         1000,
	}
}

// Total is the weight total the router of this spec writes.
func (s Spec) Total() int {
	if s.Router == RouterSMI && s.SMITotal > 0 {
		return s.SMITotal
	}
	return 100
}

// FieldError names the annotation at fault and what it accepts.
type FieldError struct {
	Key     string
	Value   string
	Allowed string
}

func (e *FieldError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return fmt.Sprintf("%s: invalid value %q: %s", e.Key, v, e.Allowed)
}

// checkName matches analysis's rule for check names in its config file.
var checkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ParseSpec overlays a Deployment's annotations on the defaults. Every bad
// annotation is reported (errors.Join of *FieldError, sorted by key), so a
// user fixes them all in one go; the returned Spec is only usable when the
// error is nil.
func ParseSpec(annotations map[string]string, defaults Spec) (Spec, error) {
	s := defaults
	s.Steps = append([]int(nil), defaults.Steps...)
	s.Hooks = maps.Clone(defaults.Hooks)
	var errs []error
	bad := func(key, allowed string) {
		errs = append(errs, &FieldError{Key: key, Value: annotations[key], Allowed: allowed})
	}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(annotations[k])
		switch k {
		case KeyService:
			if !dnsLabel.MatchString(v) {
				bad(k, "a Service name (DNS-1035 label, at most 63 characters)")
			}
			s.Service = v
		case KeyRouter:
			if v != RouterSMI && v != RouterHTTPRoute {
				bad(k, `one of "smi", "httproute"`)
			}
			s.Router = v
		case KeyMatch, KeyIterations:
			if err := s.parseAB(k, v); err != nil {
				errs = append(errs, err)
			}
		case KeySteps:
			steps, err := ParseSteps(v)
			if err != nil {
				bad(k, err.Error())
			}
			s.Steps = steps
		case KeyInterval:
			d, ok := parseDuration(v, time.Second, 24*time.Hour)
			if !ok {
				bad(k, "a duration from 1s to 24h, e.g. 30s or 1m")
			}
			s.Interval = d
		case KeyProgressDeadline:
			d, ok := parseDuration(v, time.Second, 7*24*time.Hour)
			if !ok {
				bad(k, "a duration from 1s to 168h, e.g. 10m")
			}
			s.ProgressDeadline = d
		case KeyMaxLatencyP99:
			d, ok := parseDuration(v, time.Millisecond, time.Hour)
			if !ok {
				bad(k, "a duration from 1ms to 1h, e.g. 500ms")
			}
			s.MaxLatencyP99 = d
		case KeyMaxFailures:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				bad(k, "an integer from 1 to 1000")
			}
			s.MaxFailures = n
		case KeyMinRequests:
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1_000_000_000 {
				bad(k, "an integer from 0 to 1000000000")
			}
			s.MinRequests = n
		case KeyMinSuccessRate:
			f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
			if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
				bad(k, "a percentage from 0 to 100, e.g. 99 or 99.5")
			}
			s.MinSuccessRate = f
		case KeyOnInconclusive:
			if v != "hold" && v != "rollback" {
				bad(k, `one of "hold", "rollback"`)
			}
			s.OnInconclusive = v
		case KeyManualPromotion:
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad(k, `"true" or "false"`)
			}
			s.ManualPromotion = b
		case KeyAnalysis:
			names, allowed := parseChecks(v, defaults.KnownChecks)
			if allowed != "" {
				bad(k, allowed)
			}
			s.Analysis = names
		case KeyWindow:
			w, err := ParseWindow(v)
			if err != nil {
				bad(k, err.Error())
			}
			s.Window = w
		case KeyOutsideWindow:
			if v != "finish" && v != "hold" {
				bad(k, `one of "finish", "hold"`)
			}
			s.OutsideWindow = v
		case KeyPreRollout, KeyConfirmPromotion, KeyPostRollout:
			if !validHookURL(v) {
				bad(k, "an absolute http:// or https:// URL of at most 2048 characters")
			}
			if s.Hooks == nil {
				s.Hooks = map[Hook]string{}
			}
			s.Hooks[Hook(strings.TrimPrefix(k, Prefix))] = v
		case AnnotationStatus:
		default:
			if _, ok := commandByKey[k]; !ok {
				bad(k, "not a canaryd annotation; known: "+strings.Join(knownKeys(), ", "))
			}
		}
	}
	errs = append(errs, s.finishAB(annotations)...)
	if len(errs) == 0 {
		if err := checkStepsFit(s); err != nil {
			errs = append(errs, err)
		}
	}
	return s, errors.Join(errs...)
}

var dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// checkStepsFit rejects steps the router's weight total cannot express:
// 105m is fine for v1alpha1 (total 1000) but not for percent-based routers.
func checkStepsFit(s Spec) error {
	unit := 1000 / s.Total()
	for _, w := range s.Steps {
		if w%unit != 0 {
			return &FieldError{Key: KeySteps, Value: formatSteps(s.Steps),
				Allowed: fmt.Sprintf("router %q splits in whole percent: each step must be a multiple of 10m", s.Router)}
		}
	}
	return nil
}

// ParseSteps reads "100m,200m,500m" (milli) or "10,20,50" (percent, decimals
// allowed down to 0.1). Steps must be strictly increasing, in (0, 1000m].
func ParseSteps(v string) ([]int, error) {
	const allowed = "comma-separated, strictly increasing weights above 0 and at most 100%, in milli (100m) or percent (10)"
	if v == "" {
		return nil, errors.New(allowed)
	}
	parts := strings.Split(v, ",")
	if len(parts) > 100 {
		return nil, errors.New("at most 100 steps; " + allowed)
	}
	steps := make([]int, 0, len(parts))
	for _, p := range parts {
		w, ok := parseWeight(strings.TrimSpace(p))
		if !ok || w <= 0 || w > 1000 || (len(steps) > 0 && w <= steps[len(steps)-1]) {
			return nil, errors.New(allowed)
		}
		steps = append(steps, w)
	}
	return steps, nil
}

func parseWeight(p string) (int, bool) {
	if m, ok := strings.CutSuffix(p, "m"); ok {
		n, err := strconv.Atoi(m)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	milli := f * 10
	if milli != math.Trunc(milli) {
		return 0, false
	}
	return int(milli), true
}

func formatSteps(steps []int) string {
	s := make([]string, len(steps))
	for i, w := range steps {
		s[i] = strconv.Itoa(w) + "m"
	}
	return strings.Join(s, ",")
}

func parseDuration(v string, lo, hi time.Duration) (time.Duration, bool) {
	d, err := time.ParseDuration(v)
	return d, err == nil && d >= lo && d <= hi
}

func parseChecks(v string, known []string) ([]string, string) {
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !checkName.MatchString(n) {
			return nil, "comma-separated check names (letters, digits, '_', '.', '-'; at most 63)"
		}
		if known != nil && !contains(known, n) {
			if len(known) == 0 {
				return nil, fmt.Sprintf("unknown check %q: canaryd's config defines no custom checks", n)
			}
			return nil, fmt.Sprintf("unknown check %q; defined: %s", n, strings.Join(known, ", "))
		}
		names = append(names, n)
	}
	return names, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func knownKeys() []string {
	keys := []string{KeyService, KeyRouter, KeySteps, KeyInterval, KeyMaxFailures, KeyMinSuccessRate,
		KeyMaxLatencyP99, KeyMinRequests, KeyProgressDeadline, KeyOnInconclusive, KeyAnalysis,
		KeyManualPromotion, KeyWindow, KeyOutsideWindow, KeyPreRollout, KeyConfirmPromotion, KeyPostRollout}
	for k := range commandByKey {
		keys = append(keys, k)
	}
	keys = append(keys, KeyMatch, KeyIterations)
	sort.Strings(keys)
	return keys
}
