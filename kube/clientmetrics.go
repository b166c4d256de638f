package kube

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// Client-go request metrics. canaryd_api_writes_total counts the writes the
// controller meant to make; these count what actually went over the wire,
// reads included, so that a benchmark (or an operator wondering why the API
// server is busy) can divide API traffic by the rollout steps it paid for.
//
//	canaryd_api_requests_total{method, code}              every request, watches included
//	canaryd_api_request_duration_seconds{verb, resource}  every request but watches
//	canaryd_api_rate_limiter_wait_seconds{verb}           time queued behind the client's QPS limit
//
// verb is the Kubernetes verb (get, list, create, update, patch, delete,
// deletecollection), resource the API resource ("deployments",
// "trafficsplits", "deployments/status"): names and namespaces never become
// label values, so the series stay a few dozen however many Deployments are
// managed.
type clientMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	throttle *prometheus.HistogramVec
}

var (
	clientMetricsOnce sync.Once
	theClientMetrics  *clientMetrics
)

// RegisterClientMetrics adds client-go's request metrics to reg. Client-go
// has a single, process-wide set of hooks that can be installed only once, so
// the collectors are process-wide too: every call registers the same ones
// (each registry may take them once) and the first call installs the hooks.
func RegisterClientMetrics(reg prometheus.Registerer) error {
	clientMetricsOnce.Do(func() {
		m := &clientMetrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_api_requests_total",
				Help: "Requests to the Kubernetes API server by HTTP method and status code (watches included)."},
				[]string{"method", "code"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "canaryd_api_request_duration_seconds",
				Help:    "Kubernetes API request latency by verb and resource (watches excluded).",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"verb", "resource"}),
			throttle: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "canaryd_api_rate_limiter_wait_seconds",
				Help:    "Time requests waited for the client's own QPS limit, by verb.",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"verb"}),
		}
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestResult:      resultAdapter{m.requests},
			RequestLatency:     latencyAdapter{m.latency, true},
			RateLimiterLatency: latencyAdapter{m.throttle, false},
		})
		theClientMetrics = m
	})
	m := theClientMetrics
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.throttle} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type resultAdapter struct{ v *prometheus.CounterVec }

func (a resultAdapter) Increment(_ context.Context, code, method, _ string) {
	a.v.WithLabelValues(method, code).Inc()
}

type latencyAdapter struct {
	v            *prometheus.HistogramVec
	withResource bool
}

func (a latencyAdapter) Observe(_ context.Context, method string, u url.URL, d time.Duration) {
	verb, resource := classify(method, u.Path)
	if a.withResource {
		a.v.WithLabelValues(verb, resource).Observe(d.Seconds())
		return
	}
	a.v.WithLabelValues(verb).Observe(d.Seconds())
}

// resourceName is what a resource (or resource/subresource) label may look
// like; anything else is "other", so that an odd URL cannot mint series.
var resourceName = regexp.MustCompile(`^[a-z0-9.-]{1,63}(/[a-z0-9.-]{1,63})?$`)

// classify turns a request into a Kubernetes verb and resource from its URL
// path, which client-go hands over as a template with {namespace} and {name}
// in place of the real ones:
//
//	GET   /apis/apps/v1/namespaces/{namespace}/deployments/{name}  → get, deployments
//	GET   /api/v1/namespaces/{namespace}/services                  → list, services
//	PATCH /apis/apps/v1/namespaces/{namespace}/deployments/{name}  → patch, deployments
//	PUT   /apis/apps/v1/namespaces/{namespace}/deployments/{name}/status → update, deployments/status
//	GET   /apis/split.smi-spec.io                                  → get, discovery
func classify(method, path string) (verb, resource string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(segs) >= 3 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 4 && segs[0] == "apis":
		rest = segs[3:]
	}
	named := false
	switch {
	case len(rest) == 0:
		resource = "discovery" // /api, /apis, /apis/<group>/<version>, /version
	case rest[0] == "namespaces" && len(rest) >= 3 && (len(rest) != 3 || rest[2] != "status" && rest[2] != "finalize"):
		rest = rest[2:] // namespaced: namespaces/<ns>/<resource>[/<name>[/<sub>]]
		fallthrough
	default:
		resource = rest[0]
		named = len(rest) >= 2
		if len(rest) >= 3 {
			resource += "/" + rest[2]
		}
	}
	if !resourceName.MatchString(resource) {
		resource = "other"
	}
	switch method {
	case "GET":
		verb = "list"
		if named || resource == "discovery" {
			verb = "get"
		}
	case "POST":
		verb = "create"
	case "PUT":
		verb = "update"
	case "PATCH":
		verb = "patch"
	case "DELETE":
		verb = "deletecollection"
		if named {
			verb = "delete"
		}
	default:
		verb = strings.ToLower(method)
		if !resourceName.MatchString(verb) {
			verb = "other"
		}
	}
	return verb, resource
}
