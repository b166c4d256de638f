package analysis

import (
	"context"
	"fmt"
	"math"
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
// Prometheus succeeded, and says when the latest of those scrapes was (zero
// with none): `up` carries the same target labels (namespace, deployment
// from the Linkerd scrape job's relabelling) as the proxy metrics the
// analysis reads, so a pod counted here is a pod the analysis can see. A
// target is scraped at a fixed phase of the interval, so the time also
// tells when its next scrapes will be.
//
// With podTemplateHash, only the pods of that ReplicaSet count, where the
// targets carry the label (Linkerd's scrape job copies every pod label:
// pod_template_hash): the pods of a canary rolled back a moment ago are
// still scraped and would otherwise answer for the new ones, which no scrape
// has seen yet. Targets without the label count as before.
func (p *Prom) Scraped(ctx context.Context, namespace, deployment, podTemplateHash string) (int, time.Time, error) {
	// timestamp() gives a sample's own time only when applied to a selector
	// (of an expression such as `up == 1` it gives the evaluation time), so
	// the filter goes on the other side of `and`.
	sel := fmt.Sprintf("up{namespace=%s,deployment=%s}", quote(namespace), quote(deployment))
	q := fmt.Sprintf("timestamp(%s) and %s == 1", sel, sel)
	v, err := p.client.query(ctx, "pods of "+deployment+" scraped", q, time.Time{})
	if err != nil {
		return 0, time.Time{}, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return 0, time.Time{}, fmt.Errorf("pods of %s scraped: want a vector, got %s", deployment, v.Type())
	}
	labelled := false
	for _, smp := range vec {
		labelled = labelled || smp.Metric["pod_template_hash"] != ""
	}
	n := 0
	var last time.Time
	for _, smp := range vec {
		if podTemplateHash != "" && labelled && string(smp.Metric["pod_template_hash"]) != podTemplateHash {
			continue
		}
		n++
		f := float64(smp.Value)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		if at := time.UnixMilli(int64(math.Round(f * 1000))).UTC(); at.After(last) {
			last = at
		}
	}
	return n, last, nil
}
