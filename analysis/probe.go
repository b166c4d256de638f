package analysis

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Query runs one instant query at Prometheus's now through the analyzer's
// client (address, credentials, TLS, headers, timeout), so that diagnostics
// such as `canaryd check` reach Prometheus exactly as the analysis does.
// It is not for verdicts: Analyze is.
func (p *Prom) Query(ctx context.Context, name, q string) (model.Value, error) {
	return p.client.query(ctx, name, q, time.Time{})
}

// Scraped counts the pods of deployment in namespace whose last scrape by
// Prometheus succeeded: `up` carries the same target labels (namespace,
// deployment from the Linkerd scrape job's relabelling) as the proxy metrics
// the analysis reads, so a pod counted here is a pod the analysis can see.
func (p *Prom) Scraped(ctx context.Context, namespace, deployment string) (int, error) {
	q := fmt.Sprintf("count(up{namespace=%s,deployment=%s} == 1)", quote(namespace), quote(deployment))
	v, err := p.client.query(ctx, "pods of "+deployment+" scraped", q, time.Time{})
	if err != nil {
		return 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return 0, fmt.Errorf("pods of %s scraped: want a vector, got %s", deployment, v.Type())
	}
	if len(vec) == 0 {
		return 0, nil // no pod scraped: count() of nothing is no sample
	}
	return int(vec[0].Value), nil
}
