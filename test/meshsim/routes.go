package meshsim

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// weightedBackend is one backend Service with its share. Weights are relative: a TrafficSplit's "900m" and
// "100m" are 900 and 100 here, its integers 90 and 10 become 90000 and 10000; only their ratio matters.
type weightedBackend struct {
	svc    svcKey
	weight int64
}

// split is the routing of an apex by a TrafficSplit.
type split struct {
	name     string
	backends []weightedBackend
}

// routeRule is one rule of an HTTPRoute attached to an apex.
type routeRule struct {
	route    string // namespace/name, for logs
	index    int    // rule position within its route
	matches  []routeMatch
	backends []weightedBackend // empty: the parent Service itself
}

// routeMatch is one HTTPRouteMatch, reduced to what a simulated "GET /" request can be tested against.
type routeMatch struct {
	pathOK     bool // the path condition (if any) accepts "/"
	pathExact  bool
	prefixLen  int
	method     string
	headers    []headerMatch
	impossible bool // e.g. query parameters, which simulated requests never carry
}

type headerMatch struct {
	name  string // lower case
	value string
	re    *regexp.Regexp // for type RegularExpression
}

// parseSplit reads a TrafficSplit of any served version. It returns the apex name and the split.
func parseSplit(obj *unstructured.Unstructured) (string, split, error) {
	apex, _, _ := unstructured.NestedString(obj.Object, "spec", "service")
	if apex == "" {
		return "", split{}, fmt.Errorf("spec.service is empty")
	}
	raw, _, err := unstructured.NestedSlice(obj.Object, "spec", "backends")
	if err != nil {
		return "", split{}, fmt.Errorf("spec.backends: %w", err)
	}
	sp := split{name: obj.GetNamespace() + "/" + obj.GetName()}
	for i, b := range raw {
		m, ok := b.(map[string]any)
		if !ok {
			return "", split{}, fmt.Errorf("spec.backends[%d] is not an object", i)
		}
		svc, _ := m["service"].(string)
		if svc == "" {
			return "", split{}, fmt.Errorf("spec.backends[%d].service is empty", i)
		}
		wt, err := parseWeight(m["weight"])
		if err != nil {
			return "", split{}, fmt.Errorf("spec.backends[%d].weight: %w", i, err)
		}
		sp.backends = append(sp.backends, weightedBackend{svc: svcKey{obj.GetNamespace(), svc}, weight: wt})
	}
	return apex, sp, nil
}

// parseWeight accepts a Kubernetes quantity ("900m", "1") or a JSON number, and returns milli-units.
func parseWeight(v any) (int64, error) {
	var q resource.Quantity
	switch w := v.(type) {
	case nil:
		return 0, fmt.Errorf("missing")
	case string:
		p, err := resource.ParseQuantity(w)
		if err != nil {
			return 0, fmt.Errorf("quantity %q: %w", w, err)
		}
		q = p
	case int64:
		q = *resource.NewQuantity(w, resource.DecimalSI)
	case float64:
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return 0, fmt.Errorf("not a finite number")
		}
		q = *resource.NewMilliQuantity(int64(math.Round(w*1000)), resource.DecimalSI)
	default:
		return 0, fmt.Errorf("unexpected type %T", v)
	}
	m := q.MilliValue()
	if m < 0 {
		return 0, fmt.Errorf("negative weight %s", q.String())
	}
	return m, nil
}

// parseRoute reads an HTTPRoute (Gateway API or policy.linkerd.io) and returns its Service parents and
// rules. Parents of another kind (a Gateway, a Linkerd Server) are not ours and are dropped.
func parseRoute(obj *unstructured.Unstructured) ([]svcKey, []routeRule, error) {
	ns := obj.GetNamespace()
	name := ns + "/" + obj.GetName()
	rawParents, _, err := unstructured.NestedSlice(obj.Object, "spec", "parentRefs")
	if err != nil {
		return nil, nil, fmt.Errorf("spec.parentRefs: %w", err)
	}
	var parents []svcKey
	for _, p := range rawParents {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if !isServiceRef(m, false) {
			continue
		}
		pn, _ := m["name"].(string)
		if pn == "" {
			continue
		}
		pns, _ := m["namespace"].(string)
		if pns == "" {
			pns = ns
		}
		parents = append(parents, svcKey{pns, pn})
	}
	rawRules, _, err := unstructured.NestedSlice(obj.Object, "spec", "rules")
	if err != nil {
		return nil, nil, fmt.Errorf("spec.rules: %w", err)
	}
	var rules []routeRule
	for i, r := range rawRules {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("spec.rules[%d] is not an object", i)
		}
		rule, err := parseRule(ns, m)
		if err != nil {
			return nil, nil, fmt.Errorf("spec.rules[%d]: %w", i, err)
		}
		rule.route, rule.index = name, i
		rules = append(rules, rule)
	}
	return parents, rules, nil
}

// isServiceRef tells whether a parentRef or backendRef names a core Service. For backendRefs the Gateway API
// default kind is Service; for parentRefs it is Gateway, so a parent must say kind: Service.
func isServiceRef(m map[string]any, kindDefaultsToService bool) bool {
	kind, _ := m["kind"].(string)
	group, _ := m["group"].(string)
	if kind == "" && kindDefaultsToService {
		kind = "Service"
	}
	return kind == "Service" && (group == "" || group == "core")
}

func parseRule(ns string, m map[string]any) (routeRule, error) {
	var rule routeRule
	rawMatches, _ := m["matches"].([]any)
	for j, rm := range rawMatches {
		mm, ok := rm.(map[string]any)
		if !ok {
			return rule, fmt.Errorf("matches[%d] is not an object", j)
		}
		match, err := parseMatch(mm)
		if err != nil {
			return rule, fmt.Errorf("matches[%d]: %w", j, err)
		}
		rule.matches = append(rule.matches, match)
	}
	rawBackends, _ := m["backendRefs"].([]any)
	for j, rb := range rawBackends {
		bm, ok := rb.(map[string]any)
		if !ok || !isServiceRef(bm, true) {
			continue
		}
		name, _ := bm["name"].(string)
		if name == "" {
			continue
		}
		bns, _ := bm["namespace"].(string)
		if bns == "" {
			bns = ns
		}
		wt := int64(1) // Gateway API default weight
		if v, ok := bm["weight"]; ok {
			n, ok := asInt64(v)
			if !ok || n < 0 {
				return rule, fmt.Errorf("backendRefs[%d].weight %v is not a non-negative integer", j, v)
			}
			wt = n
		}
		rule.backends = append(rule.backends, weightedBackend{svc: svcKey{bns, name}, weight: wt})
	}
	if len(rawBackends) > 0 && len(rule.backends) == 0 {
		return rule, fmt.Errorf("no backendRef names a Service")
	}
	return rule, nil
}

func parseMatch(mm map[string]any) (routeMatch, error) {
	match := routeMatch{pathOK: true, prefixLen: 1} // no path condition means PathPrefix "/"
	if p, ok := mm["path"].(map[string]any); ok {
		typ, _ := p["type"].(string)
		val, _ := p["value"].(string)
		if val == "" {
			val = "/"
		}
		switch typ {
		case "", "PathPrefix":
			// "/" is a prefix of "/" only for the value "/" itself (prefixes match whole path segments).
			match.pathOK = strings.TrimSuffix(val, "/") == ""
			match.prefixLen = len(val)
		case "Exact":
			match.pathOK = val == "/"
			match.pathExact = true
		case "RegularExpression":
			re, err := regexp.Compile("^(?:" + val + ")$")
			if err != nil {
				return match, fmt.Errorf("path regex: %w", err)
			}
			match.pathOK = re.MatchString("/")
		default:
			return match, fmt.Errorf("path type %q unknown", typ)
		}
	}
	match.method, _ = mm["method"].(string)
	if q, ok := mm["queryParams"].([]any); ok && len(q) > 0 {
		match.impossible = true
	}
	rawHeaders, _ := mm["headers"].([]any)
	for k, rh := range rawHeaders {
		hm, ok := rh.(map[string]any)
		if !ok {
			return match, fmt.Errorf("headers[%d] is not an object", k)
		}
		name, _ := hm["name"].(string)
		val, _ := hm["value"].(string)
		if name == "" {
			return match, fmt.Errorf("headers[%d].name is empty", k)
		}
		h := headerMatch{name: strings.ToLower(name), value: val}
		if typ, _ := hm["type"].(string); typ == "RegularExpression" {
			re, err := regexp.Compile(val)
			if err != nil {
				return match, fmt.Errorf("headers[%d] regex: %w", k, err)
			}
			h.re = re
		}
		match.headers = append(match.headers, h)
	}
	return match, nil
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n != math.Trunc(n) {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

// matches tells whether a simulated "GET /" request with the given headers satisfies m.
func (m routeMatch) matches(headers map[string]string) bool {
	if m.impossible || !m.pathOK {
		return false
	}
	if m.method != "" && m.method != "GET" {
		return false
	}
	for _, h := range m.headers {
		v, ok := headers[h.name]
		if !ok {
			return false
		}
		if h.re != nil {
			if !h.re.MatchString(v) {
				return false
			}
		} else if v != h.value {
			return false
		}
	}
	return true
}

// moreSpecific reports whether match a takes precedence over b under Gateway API rules: exact path, then the
// longer prefix, then a method, then more header matches. Ties keep the earlier rule.
func moreSpecific(a, b routeMatch) bool {
	if a.pathExact != b.pathExact {
		return a.pathExact
	}
	if a.prefixLen != b.prefixLen {
		return a.prefixLen > b.prefixLen
	}
	if (a.method != "") != (b.method != "") {
		return a.method != ""
	}
	return len(a.headers) > len(b.headers)
}

// pickRule returns the rule a request with these headers takes, or false when none matches (the proxy answers
// 404 itself). Rules are in precedence order of their routes (oldest first), so ties keep the first.
func pickRule(rules []routeRule, headers map[string]string) (routeRule, bool) {
	var best routeRule
	var bestMatch routeMatch
	found := false
	for _, r := range rules {
		ms := r.matches
		if len(ms) == 0 {
			ms = []routeMatch{{pathOK: true, prefixLen: 1}} // no matches = PathPrefix "/"
		}
		for _, m := range ms {
			if !m.matches(headers) {
				continue
			}
			if !found || moreSpecific(m, bestMatch) {
				best, bestMatch, found = r, m, true
			}
		}
	}
	return best, found
}

// headerClass is a share of an apex's requests that carries a set of headers.
type headerClass struct {
	share   float64
	headers map[string]string
}

// parseHeaderClasses reads the meshsim/headers annotation (format in the package documentation).
func parseHeaderClasses(s string) ([]headerClass, error) {
	var out []headerClass
	total := 0.0
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		i := strings.LastIndex(entry, ":")
		if i < 0 {
			return nil, fmt.Errorf("%q has no \":share\"", entry)
		}
		share, err := strconv.ParseFloat(strings.TrimSpace(entry[i+1:]), 64)
		if err != nil || share < 0 || share > 1 {
			return nil, fmt.Errorf("%q: share must be a number in [0,1]", entry)
		}
		hc := headerClass{share: share, headers: map[string]string{}}
		for _, kv := range strings.Split(entry[:i], "&") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.ToLower(strings.TrimSpace(k))
			if !ok || k == "" {
				return nil, fmt.Errorf("%q: header %q is not name=value", entry, kv)
			}
			hc.headers[k] = strings.TrimSpace(v)
		}
		total += share
		out = append(out, hc)
	}
	if total > 1+1e-9 {
		return nil, fmt.Errorf("shares sum to %v, more than 1", total)
	}
	return out, nil
}

// pickHeaders returns the headers of the class u ∈ [0,1) falls in, or nil for the plain remainder.
func pickHeaders(classes []headerClass, u float64) map[string]string {
	acc := 0.0
	for _, c := range classes {
		acc += c.share
		if u < acc {
			return c.headers
		}
	}
	return nil
}

// pickBackend chooses a backend with probability weight / total, given u ∈ [0,1). It returns false when all
// weights are 0 (the proxy has nowhere to send the request).
func pickBackend(backends []weightedBackend, u float64) (svcKey, bool) {
	var total int64
	for _, b := range backends {
		total += b.weight
	}
	if total <= 0 {
		return svcKey{}, false
	}
	x := int64(u * float64(total))
	for _, b := range backends {
		if x < b.weight {
			return b.svc, true
		}
		x -= b.weight
	}
	// Only float rounding of u*total up to total gets here: give it to the last backend with a weight.
	for i := len(backends) - 1; i >= 0; i-- {
		if backends[i].weight > 0 {
			return backends[i].svc, true
		}
	}
	return svcKey{}, false
}
