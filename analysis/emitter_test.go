package analysis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// linkerdBounds are the proxy's latency bucket bounds in milliseconds.
var linkerdBounds = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// proxy is one meshed pod's inbound metrics.
type proxy struct {
	namespace, pod, deployment, ip string
	byStatus                       map[int]*series // 200, 500
	adminScrapes                   int             // inbound requests on the admin port
}

type series struct {
	count, sumMs int64
	buckets      []int64 // cumulative per linkerdBounds
}

// emitter serves Linkerd proxy exposition for several pods on one /metrics,
// with the labels Linkerd-viz's scrape config would add (namespace, pod,
// deployment): Prometheus scrapes it with honor_labels.
type emitter struct {
	mu      sync.Mutex
	proxies []*proxy
	addr    string
}

func startEmitter(t testing.TB) *emitter {
	t.Helper()
	e := &emitter{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

// pod adds a proxy for one pod of a deployment.
func (e *emitter) pod(namespace, deployment string) *proxy {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := &proxy{namespace: namespace, deployment: deployment, byStatus: map[int]*series{},
		pod: fmt.Sprintf("%s-%d-x7k2p", deployment, len(e.proxies)), ip: fmt.Sprintf("10.42.0.%d", 10+len(e.proxies))}
	e.proxies = append(e.proxies, p)
	return p
}

// record counts one request answered with status after latencyMs.
func (e *emitter) record(p *proxy, status int, latencyMs float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := p.byStatus[status]
	if s == nil {
		s = &series{buckets: make([]int64, len(linkerdBounds))}
		p.byStatus[status] = s
	}
	s.count++
	s.sumMs += int64(latencyMs)
	for i, le := range linkerdBounds {
		if latencyMs <= le {
			s.buckets[i]++
		}
	}
}

func (e *emitter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	b.WriteString("# HELP request_total Total count of HTTP requests.\n# TYPE request_total counter\n")
	for _, p := range e.proxies {
		// the scrape itself is an inbound request on the admin port
		p.adminScrapes++
		fmt.Fprintf(&b, "request_total{%s} %d\n", p.labels("4191"), p.adminScrapes)
		fmt.Fprintf(&b, "request_total{%s} %d\n", p.labels("8080"), p.total())
	}
	b.WriteString("# HELP response_latency_ms Elapsed times between a request's headers being received and its response stream completing\n# TYPE response_latency_ms histogram\n")
	for _, p := range e.proxies {
		for _, code := range p.codes() {
			s, l := p.byStatus[code], fmt.Sprintf(`%s,status_code="%d"`, p.labels("8080"), code)
			for i, le := range linkerdBounds {
				fmt.Fprintf(&b, "response_latency_ms_bucket{%s,le=\"%g\"} %d\n", l, le, s.buckets[i])
			}
			fmt.Fprintf(&b, "response_latency_ms_bucket{%s,le=\"+Inf\"} %d\n", l, s.count)
			fmt.Fprintf(&b, "response_latency_ms_count{%s} %d\nresponse_latency_ms_sum{%s} %d\n", l, s.count, l, s.sumMs)
		}
		fmt.Fprintf(&b, "response_latency_ms_bucket{%s,status_code=\"200\",le=\"+Inf\"} %d\n", p.labels("4191"), p.adminScrapes)
	}
	b.WriteString("# HELP response_total Total count of HTTP responses.\n# TYPE response_total counter\n")
	for _, p := range e.proxies {
		fmt.Fprintf(&b, "response_total{%s,status_code=\"200\",classification=\"success\",grpc_status=\"\",error=\"\"} %d\n",
			p.labels("4191"), p.adminScrapes)
		for _, code := range p.codes() {
			class := "success"
			if code >= 500 {
				class = "failure"
			}
			fmt.Fprintf(&b, "response_total{%s,status_code=\"%d\",classification=%q,grpc_status=\"\",error=\"\"} %d\n",
				p.labels("8080"), code, class, p.byStatus[code].count)
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(b.String()))
}

func (p *proxy) labels(port string) string {
	return fmt.Sprintf(`namespace=%q,pod=%q,deployment=%q,direction="inbound",target_addr="%s:%s",target_ip=%q,target_port=%q,`+
		`tls="true",client_id="default.%s.serviceaccount.identity.linkerd.cluster.local",srv_group="",srv_kind="default",`+
		`srv_name="all-unauthenticated",srv_port=%q,route_group="",route_kind="default",route_name="default",`+
		`authz_group="",authz_kind="default",authz_name="all-unauthenticated"`,
		p.namespace, p.pod, p.deployment, p.ip, port, p.ip, port, p.namespace, port)
}

func (p *proxy) codes() []int {
	var out []int
	for c := range p.byStatus {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func (p *proxy) total() int64 {
	var n int64
	for _, s := range p.byStatus {
		n += s.count
	}
	return n
}

// traffic sends rps requests a second to p until ctx ends: a share errRate
// answered 500, latencies uniform in [latencyMs/2, 3·latencyMs/2).
type traffic struct {
	rps       float64
	errRate   float64
	latencyMs float64
}

func (e *emitter) drive(ctx context.Context, p *proxy, tr traffic, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for owed += tr.rps / 20; owed >= 1; owed-- {
			status := 200
			if rng.Float64() < tr.errRate {
				status = 500
			}
			e.record(p, status, tr.latencyMs*(0.5+rng.Float64()))
		}
	}
}
