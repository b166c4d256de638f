package meshsim

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/types"
)

// latencyBoundsMs are the upper bounds of the proxy's response_latency_ms buckets, +Inf excluded.
var latencyBoundsMs = []float64{
	1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
}

// statusSeries holds one status code's histogram and response count.
type statusSeries struct {
	buckets [26]uint64 // per bucket, not cumulative; the last one is (50000, +Inf]
	count   uint64
	sumMs   float64
}

// proxyCounters are the inbound counters one pod's proxy would keep. uid ties them to one incarnation of the
// pod: a pod recreated under the same name starts again from 0, like a new proxy.
type proxyCounters struct {
	uid      types.UID
	requests uint64
	byStatus map[int]*statusSeries
}

func newProxyCounters(uid types.UID) *proxyCounters {
	return &proxyCounters{uid: uid, byStatus: map[int]*statusSeries{}}
}

// ensure creates the series of a status code at 0.
func (p *proxyCounters) ensure(status int) *statusSeries {
	s := p.byStatus[status]
	if s == nil {
		s = &statusSeries{}
		p.byStatus[status] = s
	}
	return s
}

// observe counts one request answered with status after ms milliseconds.
func (p *proxyCounters) observe(status int, ms float64) {
	p.requests++
	s := p.ensure(status)
	s.count++
	s.sumMs += ms
	i, _ := slices.BinarySearch(latencyBoundsMs, ms) // first bound ≥ ms: buckets are "less or equal"
	s.buckets[i]++
}

// proxyIdentity is what the proxy knows about itself and its (single, simulated) client.
type proxyIdentity struct {
	ip       string
	port     int32
	clientID string
}

func identityOf(p *podInfo) proxyIdentity {
	return proxyIdentity{
		ip:   p.ip,
		port: p.port,
		// All simulated traffic comes from the default ServiceAccount of the pod's namespace, over mTLS.
		clientID: "default." + p.key.ns + ".serviceaccount.identity.linkerd.cluster.local",
	}
}

// Help texts and label values as the Linkerd 2.18+ proxy prints them.
const (
	helpRequestTotal  = "Total count of HTTP requests."
	helpLatency       = "Elapsed times between a request's headers being received and its response stream completing"
	helpResponseTotal = "Total count of HTTP responses."
)

// writeExposition writes p in the proxy's text format: request_total, response_latency_ms, response_total,
// with the inbound label order of the proxy and integer values. Status codes are in ascending order.
func writeExposition(out io.Writer, id proxyIdentity, p *proxyCounters) error {
	w := bufio.NewWriter(out)
	port := strconv.Itoa(int(id.port))
	labels := `direction="inbound",target_addr="` + net.JoinHostPort(id.ip, port) + `",target_ip="` + id.ip +
		`",target_port="` + port + `",tls="true",client_id="` + id.clientID +
		`",srv_group="",srv_kind="default",srv_name="all-unauthenticated",srv_port="` + port +
		`",route_group="",route_kind="default",route_name="default"` +
		`,authz_group="",authz_kind="default",authz_name="all-unauthenticated"`

	codes := make([]int, 0, len(p.byStatus))
	for c := range p.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)

	fmt.Fprintf(w, "# HELP request_total %s\n# TYPE request_total counter\n", helpRequestTotal)
	fmt.Fprintf(w, "request_total{%s} %d\n", labels, p.requests)

	fmt.Fprintf(w, "# HELP response_latency_ms %s\n# TYPE response_latency_ms histogram\n", helpLatency)
	for _, c := range codes {
		s := p.byStatus[c]
		sl := labels + `,status_code="` + strconv.Itoa(c) + `"`
		var cum uint64
		for i, n := range s.buckets {
			cum += n
			le := "+Inf"
			if i < len(latencyBoundsMs) {
				le = strconv.FormatFloat(latencyBoundsMs[i], 'f', -1, 64)
			}
			fmt.Fprintf(w, "response_latency_ms_bucket{%s,le=\"%s\"} %d\n", sl, le, cum)
		}
		fmt.Fprintf(w, "response_latency_ms_count{%s} %d\n", sl, s.count)
		fmt.Fprintf(w, "response_latency_ms_sum{%s} %d\n", sl, uint64(math.Round(s.sumMs)))
	}

	fmt.Fprintf(w, "# HELP response_total %s\n# TYPE response_total counter\n", helpResponseTotal)
	for _, c := range codes {
		class := "success"
		if c >= 500 {
			class = "failure"
		}
		fmt.Fprintf(w, "response_total{%s,status_code=\"%d\",classification=\"%s\",grpc_status=\"\",error=\"\"} %d\n",
			labels, c, class, p.byStatus[c].count)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write exposition: %w", err)
	}
	return nil
}
