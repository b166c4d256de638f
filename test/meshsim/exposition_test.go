package meshsim

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func readSample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/proxy-metrics-inbound-2.18plus.txt")
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	return string(b)
}

// TestExpositionReproducesTheProxySample feeds the counters the requests that the sample describes (118 × 200
// with these latencies, 2 × 500) and expects the sample back byte for byte: names, HELP texts, label order,
// bucket bounds, integer formatting.
func TestExpositionReproducesTheProxySample(t *testing.T) {
	p := newProxyCounters("uid")
	observe := func(n int, status int, ms float64) {
		for range n {
			p.observe(status, ms)
		}
	}
	observe(10, 200, 0.5) // le="1": 10, sum 5
	observe(60, 200, 1.5) // le="2": 70, sum 95
	observe(30, 200, 4.5) // le="5": 100, sum 230
	observe(17, 200, 8)   // le="10": 117, sum 366
	observe(1, 200, 10)   // le="10" (bounds are inclusive): 118, sum 376
	observe(2, 500, 45)   // le="50": 2, sum 90
	var buf bytes.Buffer
	id := proxyIdentity{ip: "10.42.0.21", port: 9898, clientID: "default.test.serviceaccount.identity.linkerd.cluster.local"}
	if err := writeExposition(&buf, id, p); err != nil {
		t.Fatal(err)
	}
	want := readSample(t)
	if got := buf.String(); got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d differs:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}

var sampleLine = regexp.MustCompile(`^([a-z_]+)\{(.*)\} (\S+)$`)

// shape is what a scraper relies on in an exposition: the order of families, the label names of each metric
// name in order, and the bucket bounds of each histogram series.
type shape struct {
	families []string
	labels   map[string][]string
	buckets  []string // le values of the first status code's histogram
}

func shapeOf(t *testing.T, text string) shape {
	t.Helper()
	sh := shape{labels: map[string][]string{}}
	firstStatus := ""
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			sh.families = append(sh.families, f)
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected line %q", l)
		}
		if strings.ContainsAny(m[3], ".eE") {
			t.Errorf("value %q of %s is not an integer", m[3], m[1])
		}
		var names []string
		values := map[string]string{}
		for _, kv := range strings.Split(m[2], `",`) {
			k, v, _ := strings.Cut(kv, `="`)
			names = append(names, k)
			values[k] = strings.TrimSuffix(v, `"`)
		}
		if prev, ok := sh.labels[m[1]]; ok && !slices.Equal(prev, names) {
			t.Errorf("%s: label order %v differs between series (%v)", m[1], names, prev)
		}
		sh.labels[m[1]] = names
		if m[1] == "response_latency_ms_bucket" {
			if firstStatus == "" {
				firstStatus = values["status_code"]
			}
			if values["status_code"] == firstStatus {
				sh.buckets = append(sh.buckets, values["le"])
			}
		}
		for _, forbidden := range []string{"namespace", "pod", "deployment"} {
			if _, ok := values[forbidden]; ok {
				t.Errorf("%s carries label %q: Prometheus adds it, the proxy must not", m[1], forbidden)
			}
		}
	}
	return sh
}

// TestSimulatedExpositionHasTheSampleShape runs traffic through the simulator and checks that what it serves
// parses as Prometheus text and has the sample's families, label order and buckets.
func TestSimulatedExpositionHasTheSampleShape(t *testing.T) {
	var c cluster
	pods := c.workload("web", 1, ann(annErrorRate, "0.05"))
	c.service("web", ann(annRPS, "100"), true, pods...)
	s, _ := c.start(t, Config{Seed: 4})
	run(s, 5*time.Second)

	text := exposition(t, s, pods[0].Name)
	parseExposition(t, text)
	got, want := shapeOf(t, text), shapeOf(t, readSample(t))
	if !slices.Equal(got.families, want.families) {
		t.Errorf("families = %v, want %v", got.families, want.families)
	}
	for name, wl := range want.labels {
		if gl := got.labels[name]; !slices.Equal(gl, wl) {
			t.Errorf("%s labels = %v, want %v", name, gl, wl)
		}
	}
	if !slices.Equal(got.buckets, want.buckets) {
		t.Errorf("buckets = %v, want %v", got.buckets, want.buckets)
	}
	ip := pods[0].Status.PodIP
	for _, l := range []string{
		`request_total{direction="inbound",target_addr="` + ip + `:9898",target_ip="` + ip + `",target_port="9898",tls="true",client_id="default.test.serviceaccount.identity.linkerd.cluster.local",`,
	} {
		if !hasLine(text, l) {
			t.Errorf("no line starting %s", l)
		}
	}
}

// TestErrorRateShowsAsFailuresInResponseTotal checks that pods annotated with a 5 % error rate answer about 5 %
// of requests with status 500, classified as failure, and that latency follows the documented log-normal:
// half the requests within the median, 99 % within 3 × the median.
func TestErrorRateShowsAsFailuresInResponseTotal(t *testing.T) {
	var c cluster
	pods := c.workload("web", 2, ann(annErrorRate, "0.05", annLatencyMs, "10"))
	c.service("web", ann(annRPS, "200"), true, pods...)
	s, _ := c.start(t, Config{Seed: 5})
	run(s, 100*time.Second) // 20000 requests, 10000 per pod

	for _, p := range pods {
		fams := parseExposition(t, exposition(t, s, p.Name))
		var total, failed, ok200 uint64
		for _, m := range fams["response_total"].Metric {
			lv := map[string]string{}
			for _, lp := range m.Label {
				lv[lp.GetName()] = lp.GetValue()
			}
			v := uint64(m.GetCounter().GetValue())
			total += v
			switch {
			case lv["classification"] == "failure" && lv["status_code"] == "500":
				failed += v
			case lv["classification"] == "success" && lv["status_code"] == "200":
				ok200 += v
			default:
				t.Errorf("unexpected response_total series %v = %d", lv, v)
			}
		}
		if total != 10000 || failed+ok200 != total {
			t.Fatalf("pod %s: response_total sums to %d (500: %d, 200: %d), want 10000", p.Name, total, failed, ok200)
		}
		withinBinomial(t, p.Name+" 5xx responses", failed, total, 0.05)

		var le10, le30 uint64
		for _, m := range fams["response_latency_ms"].Metric {
			for _, b := range m.GetHistogram().Bucket {
				switch b.GetUpperBound() {
				case 10:
					le10 += b.GetCumulativeCount()
				case 30:
					le30 += b.GetCumulativeCount()
				}
			}
		}
		withinBinomial(t, p.Name+" requests within the 10 ms median", le10, total, 0.5)
		withinBinomial(t, p.Name+" requests within the 30 ms p99", le30, total, 0.99)
	}
	st := s.Stats()[Route{ns, "web", "web"}]
	withinBinomial(t, "failures in Stats", st.Failures, 20000, 0.05)
}

// TestCountersStartAtZeroAndVanishWithThePod checks the series lifecycle: present at 0 before any request,
// gone when the pod is deleted.
func TestCountersStartAtZeroAndVanishWithThePod(t *testing.T) {
	var c cluster
	pods := c.workload("web", 1, ann(annErrorRate, "0.5"))
	c.service("web", nil, true, pods...) // no rate: no traffic
	s, kube := c.start(t, Config{})

	text := exposition(t, s, pods[0].Name)
	for _, prefix := range []string{"request_total{", "response_total{"} {
		if !hasLine(text, prefix) {
			t.Errorf("no %s series at start", prefix)
		}
	}
	fams := parseExposition(t, text)
	if n := len(fams["response_total"].Metric); n != 2 {
		t.Errorf("response_total has %d series at start, want 2 (200 and the pod's error status 500)", n)
	}
	for _, m := range fams["response_total"].Metric {
		if v := m.GetCounter().GetValue(); v != 0 {
			t.Errorf("response_total starts at %v, want 0", v)
		}
	}

	if err := kube.CoreV1().Pods(ns).Delete(t.Context(), pods[0].Name, deleteNow); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, func() bool { _, ok := s.podMetrics(ns, pods[0].Name); return !ok })
}
