package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// metricsServer serves Prometheus text exposition on 127.0.0.1 and counts the scrapes of each path.
type metricsServer struct {
	addr string
	mu   sync.Mutex
	hits map[string]int
}

func serveMetrics(t *testing.T, pages map[string]func() string) *metricsServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &metricsServer{addr: l.Addr().String(), hits: map[string]int{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, page())
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *metricsServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// proxyMetrics is a two-family excerpt of a Linkerd proxy's inbound exposition: success and failure counts.
// The proxy itself never sets namespace, pod or deployment; relabelling must add them.
func proxyMetrics(success, failure int) string {
	const common = `direction="inbound",target_addr="10.244.0.7:8080",target_ip="10.244.0.7",target_port="8080",` +
		`tls="true",client_id="default.shop.serviceaccount.identity.linkerd.cluster.local",` +
		`srv_group="",srv_kind="default",srv_name="all-unauthenticated",srv_port="8080",` +
		`route_group="",route_kind="default",route_name="default"`
	return "# TYPE response_total counter\n" +
		`response_total{` + common + `,status_code="200",classification="success",grpc_status="",error=""} ` + strconv.Itoa(success) + "\n" +
		`response_total{` + common + `,status_code="503",classification="failure",grpc_status="",error=""} ` + strconv.Itoa(failure) + "\n"
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) float(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample value %v: %v", s.Value, err)
	}
	return f
}

// query runs an instant query against Prometheus's HTTP API.
func query(ctx context.Context, promURL, q string) ([]promSample, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, http.DefaultClient, promURL+"/api/v1/query?query="+url.QueryEscape(q), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, resp.Error)
	}
	return resp.Data.Result, nil
}

func writeTargets(t *testing.T, path string, groups []map[string]any) {
	t.Helper()
	b, err := json.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	// Rename, as the mesh simulator does, so that Prometheus never reads a half-written file.
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func TestPrometheusRelabelsMeshTargetsLikeLinkerdViz(t *testing.T) {
	c := need(t)
	if c.Prometheus == nil {
		t.Fatal("shared cluster started without Prometheus")
	}
	stablePath, canaryPath := "/pods/shop/web-5f7c9-abcde/metrics", "/pods/shop/web-canary-8d6b4-fghij/metrics"
	srv := serveMetrics(t, map[string]func() string{
		stablePath: func() string { return proxyMetrics(118, 2) },
		canaryPath: func() string { return proxyMetrics(7, 3) },
	})
	target := func(path, pod, deploy, hash string, extra map[string]string) map[string]any {
		labels := map[string]string{
			"__metrics_path__":                                        path,
			"__meta_kubernetes_namespace":                             "shop",
			"__meta_kubernetes_pod_name":                              pod,
			"__meta_kubernetes_pod_label_app":                         "web",
			"__meta_kubernetes_pod_label_pod_template_hash":           hash,
			"__meta_kubernetes_pod_label_linkerd_io_proxy_deployment": deploy,
		}
		for k, v := range extra {
			labels[k] = v
		}
		return map[string]any{"targets": []string{srv.addr}, "labels": labels}
	}
	writeTargets(t, c.MeshTargetsFile, []map[string]any{
		target(stablePath, "web-5f7c9-abcde", "web", "5f7c9", nil),
		target(canaryPath, "web-canary-8d6b4-fghij", "web-canary", "8d6b4",
			map[string]string{"__meta_kubernetes_pod_label_canaryd_io_role": "canary"}),
	})
	t.Cleanup(func() { writeTargets(t, c.MeshTargetsFile, []map[string]any{}) })

	var got []promSample
	eventually(t, 30*time.Second, "both pods' success series", func(ctx context.Context) error {
		var err error
		got, err = query(ctx, c.Prometheus.URL, `response_total{job="linkerd-proxy",namespace="shop",classification="success"}`)
		if err == nil && len(got) != 2 {
			err = fmt.Errorf("got %d series: %v", len(got), got)
		}
		return err
	})
	want := map[string]struct {
		deployment, hash string
		value            float64
	}{
		"web-5f7c9-abcde":        {"web", "5f7c9", 118},
		"web-canary-8d6b4-fghij": {"web-canary", "8d6b4", 7},
	}
	for _, s := range got {
		w, ok := want[s.Metric["pod"]]
		if !ok {
			t.Errorf("series for unexpected pod: %v", s.Metric)
			continue
		}
		if s.Metric["deployment"] != w.deployment || s.Metric["pod_template_hash"] != w.hash ||
			s.Metric["namespace"] != "shop" || s.Metric["app"] != "web" {
			t.Errorf("pod %s labels %v, want deployment=%s pod_template_hash=%s namespace=shop app=web",
				s.Metric["pod"], s.Metric, w.deployment, w.hash)
		}
		if v := s.float(t); v != w.value {
			t.Errorf("pod %s value %v, want %v (each pod must be scraped at its own path)", s.Metric["pod"], v, w.value)
		}
		for k := range s.Metric {
			if strings.HasPrefix(k, "linkerd_io_proxy_") || (strings.HasPrefix(k, "__") && k != "__name__") {
				t.Errorf("pod %s keeps label %s; the proxy labels must be mapped, not copied", s.Metric["pod"], k)
			}
		}
		if w.deployment == "web-canary" && s.Metric["canaryd_io_role"] != "canary" {
			t.Errorf("canary pod label canaryd.io/role not mapped: %v", s.Metric)
		}
	}
	if srv.hitsOf(stablePath) == 0 || srv.hitsOf(canaryPath) == 0 {
		t.Errorf("scrapes per path: stable %d, canary %d", srv.hitsOf(stablePath), srv.hitsOf(canaryPath))
	}

	// The success-rate query of the analysis works on these labels: 118 of 120 for the stable deployment.
	rate, err := query(context.Background(), c.Prometheus.URL,
		`sum(response_total{namespace="shop",deployment="web",direction="inbound",classification!="failure"}) / `+
			`sum(response_total{namespace="shop",deployment="web",direction="inbound"}) * 100`)
	if err != nil || len(rate) != 1 {
		t.Fatalf("success rate: %v %v", rate, err)
	}
	if v := rate[0].float(t); v < 98.33 || v > 98.34 {
		t.Errorf("success rate of web = %v, want 98.33 (118 of 120)", v)
	}
}

func TestStandalonePrometheusHonorsStaticTargetLabelsAndRestartsInPlace(t *testing.T) {
	need(t)
	var scrapes atomic.Int64
	srv := serveMetrics(t, map[string]func() string{
		"/metrics": func() string {
			n := scrapes.Add(1)
			return "# TYPE response_total counter\n" +
				`response_total{job="meshsim",namespace="shop",deployment="web",pod="web-1",direction="inbound",classification="success"} ` +
				strconv.FormatInt(n, 10) + "\n"
		},
	})
	ctx := context.Background()
	p, err := StartPrometheus(ctx, PromOptions{Dir: t.TempDir(), ScrapeInterval: 200 * time.Millisecond, StaticTargets: []string{srv.addr}})
	if err != nil {
		t.Fatalf("StartPrometheus: %v", err)
	}
	t.Cleanup(func() { p.Stop() })

	const series = `response_total{namespace="shop",deployment="web",pod="web-1"}`
	var before float64
	eventually(t, 20*time.Second, "a few samples of the static target", func(ctx context.Context) error {
		got, err := query(ctx, p.URL, "count_over_time("+series+"[10m])")
		if err != nil || len(got) != 1 {
			return fmt.Errorf("%v %w", got, err)
		}
		if before = got[0].float(t); before < 3 {
			return fmt.Errorf("only %v samples", before)
		}
		return nil
	})
	got, err := query(ctx, p.URL, series)
	if err != nil || len(got) != 1 {
		t.Fatalf("query: %v %v", got, err)
	}
	if got[0].Metric["job"] != "meshsim" {
		t.Errorf("job label %q, want the target's own \"meshsim\" (honor_labels)", got[0].Metric["job"])
	}

	oldPid, url := p.Pid(), p.URL
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if processAlive(oldPid) {
		t.Fatalf("prometheus pid %d alive after Stop", oldPid)
	}
	if _, err := query(ctx, url, "up"); err == nil {
		t.Fatal("Prometheus still answers after Stop")
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if p.URL != url || p.Pid() == oldPid || p.Pid() == 0 {
		t.Errorf("after Restart: URL %s (was %s), pid %d (was %d)", p.URL, url, p.Pid(), oldPid)
	}
	// Samples from before the outage are still there: the data directory was kept.
	got, err = query(ctx, p.URL, "count_over_time("+series+"[10m])")
	if err != nil || len(got) != 1 {
		t.Fatalf("query after restart: %v %v", got, err)
	}
	if after := got[0].float(t); after < before {
		t.Errorf("%v samples after restart, %v before: history lost", after, before)
	}
}
