package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
)

// The canary's first traffic comes after Prometheus's first scrape of it:
// kwok makes a pod ready in about 100 ms, while Prometheus's service
// discovery passes a new target on only every few seconds, so without the
// step-0 gate the canary's first requests would go unseen by the analysis.
func TestTheCanaryTakesTrafficOnlyOnceItIsScraped(t *testing.T) {
	f := given(t, "e2e-scraped").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	// Step 1's status is written before its split (intent first): wait for
	// the auditor to see the split's first canary weight, not the status.
	var on time.Time
	f.waitFor("the canary's first traffic", time.Minute, func() (bool, error) {
		on, _ = f.auditor.FirstTraffic()
		return !on.IsZero(), nil
	})
	if st, err := f.tryStatus(); err != nil || st.Step < 1 {
		t.Fatalf("the canary took traffic at step %d (%v)", st.Step, err)
	}
	p, err := analysis.NewPrometheus(analysis.Config{Client: analysis.ClientConfig{Address: env.cluster.Prometheus.URL, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	// timestamp() is each sample's scrape time, so the minimum over a fine
	// subquery is the canary pod's first successful scrape.
	q := fmt.Sprintf(`min(min_over_time(timestamp(up{namespace=%q,deployment="web-canary"} == 1)[5m:200ms]))`, f.ns)
	v, err := p.Query(context.Background(), "first scrape of web-canary", q)
	if err != nil {
		t.Fatal(err)
	}
	vec, _ := v.(model.Vector)
	if len(vec) != 1 {
		t.Fatalf("the canary took traffic at %s and Prometheus has not scraped it yet", on.Format("15:04:05.000"))
	}
	first := time.UnixMilli(int64(float64(vec[0].Value) * 1000))
	t.Logf("first scrape of the canary %s, its first traffic %s (%s later)", first.Format("15:04:05.000"),
		on.Format("15:04:05.000"), on.Sub(first).Round(time.Millisecond))
	if !first.Before(on) {
		t.Errorf("the canary took traffic at %s, before Prometheus first scraped it at %s", on.Format("15:04:05.000"), first.Format("15:04:05.000"))
	}
	if len(f.events("RolloutStarted")) == 0 {
		t.Error("no RolloutStarted event")
	}
	f.auditor.check(t, interval)
}
