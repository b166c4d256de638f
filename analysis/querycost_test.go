package analysis_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/test/cluster"
)

// costApps rollouts, a stable and a canary pod each (40 and 4 requests/s).
const costApps = 200

type costWorld struct {
	prom *cluster.Prometheus
	api  v1.API
	em   *emitter
}

// startCostWorld starts 200 rollouts' proxies and a Prometheus scraping
// them every second, and lets it collect 30 s of data.
func startCostWorld(b *testing.B) *costWorld {
	b.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		b.Skip("no prometheus binary (apt-get install prometheus)")
	}
	em := startEmitter(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := cluster.StartPrometheus(ctx, cluster.PromOptions{Dir: b.TempDir(), ScrapeInterval: time.Second, StaticTargets: []string{em.addr}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = prom.Stop() })
	c, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		b.Fatal(err)
	}
	traffic0, stop := context.WithCancel(context.Background())
	b.Cleanup(stop)
	for i := range costApps {
		name := fmt.Sprintf("app-%d", i)
		go em.drive(traffic0, em.pod("cost", name), traffic{rps: 40, errRate: 0.001, latencyMs: 10}, uint64(2*i))
		go em.drive(traffic0, em.pod("cost", name+"-canary"), traffic{rps: 4, errRate: 0.001, latencyMs: 10}, uint64(2*i+1))
	}
	time.Sleep(30 * time.Second)
	return &costWorld{prom: prom, api: v1.NewAPI(c), em: em}
}

func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// legacyForm is what a check asked until the instants form: per-series
// growth computed by Prometheus, over the window and since the canary's
// start (5 s and 20 s), four queries.
func legacyForm(ns, canary, stable string) []string {
	sel := fmt.Sprintf(`namespace=%q,deployment=~"%s|%s",direction="inbound",target_port!="4191"`, ns, canary, stable)
	grow := func(metric, r string) string { return perSeriesGrowth(metric+"{"+sel+"}", r) }
	return []string{
		"sum by (namespace, deployment, classification) (" + grow("response_total", "5s") + ")",
		"histogram_quantile(0.99, sum by (namespace, deployment, le) (" + grow("response_latency_ms_bucket", "5s") + "))",
		"sum by (namespace, deployment, classification) (" + grow("response_total", "20s") + ")",
		"sum by (namespace, deployment, le) (" + grow("response_latency_ms_bucket", "20s") + ")",
	}
}

// BenchmarkPrometheusCostPerCheck measures what one check costs
// Prometheus in CPU, its scrapes subtracted, with 200 canaries and stables
// scraped every second (the rollouts the scale benchmark has at N = 2,000):
// "before" sends the four queries a check made until the instants form
// (legacyForm), "canaryd" runs Analyze as the controller does. The check
// latency is ns/op, one check at a time.
func BenchmarkPrometheusCostPerCheck(b *testing.B) {
	w := startCostWorld(b)
	p, err := analysis.NewPrometheus(analysis.Config{
		Client: analysis.ClientConfig{Address: w.prom.URL, Timeout: 10 * time.Second}, ScrapeInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	since := time.Now().Add(-20 * time.Second)
	for _, form := range []struct {
		name  string
		check func(b *testing.B, i int)
	}{
		{"before", func(b *testing.B, i int) {
			name := fmt.Sprintf("app-%d", i%costApps)
			for _, q := range legacyForm("cost", name+"-canary", name) {
				if _, _, _, err := w.api.Query(context.Background(), q, time.Now(), v1.WithTimeout(10*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"canaryd", func(b *testing.B, i int) {
			name := fmt.Sprintf("app-%d", i%costApps)
			r := p.Analyze(context.Background(), analysis.Target{Namespace: "cost", Canary: name + "-canary", Stable: name,
				Window: 5 * time.Second, Since: since, Now: time.Now(), MinRequests: 1})
			if r.Verdict == analysis.Error || !(r.Canary.Requests > 0) {
				b.Fatalf("%s: %s", r.Verdict, r.Reason)
			}
		}},
	} {
		b.Run(form.name, func(b *testing.B) {
			pid := w.prom.Pid()
			c0, t0 := procCPU(b, pid), time.Now()
			time.Sleep(3 * time.Second)
			scrapes := float64(procCPU(b, pid)-c0) / float64(time.Since(t0))
			b.ResetTimer()
			c0, t0 = procCPU(b, pid), time.Now()
			for i := range b.N {
				form.check(b, i)
			}
			cpu := float64(procCPU(b, pid)-c0) - scrapes*float64(time.Since(t0))
			b.ReportMetric(cpu/float64(b.N)/1e6, "prom-cpu-ms/check")
			b.ReportMetric(scrapes*100, "scrape-cpu-%")
		})
	}
}
