package checkup

import (
	"context"
	"fmt"
	"strconv"

	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
)

// seriesQuery counts inbound proxy series by namespace and deployment.
// Linkerd-viz's scrape job adds both labels (`deployment` from the pod label
// the injector sets); without them canaryd cannot tell canary from stable.
const seriesQuery = `count by (namespace, deployment) (response_total{direction="inbound",deployment!=""})`

// prometheus checks that Prometheus answers canaryd's queries and holds the
// Linkerd proxy metrics they read, overall and for each opted-in Deployment.
// It goes through package analysis's client, so it reaches Prometheus
// exactly as canaryd does: same address, credentials, TLS and headers.
func (r *run) prometheus(ctx context.Context) {
	if r.cfg.Prometheus == nil {
		r.add(CatPrometheus, Warn, "Prometheus not checked", r.cfg.PrometheusSkipped, "pass --prometheus-url (e.g. after kubectl port-forward)")
		return
	}
	addr := r.cfg.Prometheus.Client.Address
	prom, err := analysis.NewPrometheus(*r.cfg.Prometheus)
	if err != nil {
		r.add(CatPrometheus, Fail, "invalid Prometheus configuration", err.Error(), "fix the --prometheus-* flags or the custom checks file")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	// Validate dry-runs the built-in queries and every custom check: a
	// Prometheus that is down or rejects a query fails here, not at the
	// first rollout.
	if err := prom.Validate(ctx); err != nil {
		r.add(CatPrometheus, Fail, "cannot query Prometheus at "+addr, err.Error(),
			"check --prometheus-url and its credentials; until it answers, every analysis is an Error verdict and rollouts hold")
		return
	}
	r.add(CatPrometheus, OK, "Prometheus at "+addr+" answers canaryd's queries", "", "")

	v, err := prom.Query(ctx, "Linkerd proxy series", seriesQuery)
	if err != nil {
		r.add(CatPrometheus, Fail, "cannot count Linkerd proxy series", err.Error(), "")
		return
	}
	series := map[string]int{} // namespace/deployment → series
	total := 0
	if vec, ok := v.(model.Vector); ok {
		for _, s := range vec {
			n := int(s.Value)
			series[string(s.Metric["namespace"])+"/"+string(s.Metric["deployment"])] += n
			total += n
		}
	}
	if total == 0 {
		r.add(CatPrometheus, Fail, "Prometheus holds no Linkerd proxy metrics (response_total with a deployment label)", "",
			"scrape the linkerd-proxy containers' admin port (4191) with linkerd-viz's relabelling, which adds "+
				"namespace and deployment; without them every analysis is inconclusive")
		return
	}
	r.add(CatPrometheus, OK, fmt.Sprintf("Prometheus holds Linkerd proxy metrics (%s of %s)",
		plural(total, "response_total series"), plural(len(series), "deployment")), "", "")
	r.scrapeLabels(ctx, prom)
	r.targets(series)
}

// upQuery counts scrape targets whose `up` carries a deployment label, and
// hashQuery those of them that also carry the pod's pod_template_hash.
const (
	upQuery   = `count(up{deployment!=""}) or vector(0)`
	hashQuery = `count(up{deployment!="",pod_template_hash!=""}) or vector(0)`
)

// scrapeLabels checks what the step-0 scrape gate reads: canaryd gives a
// canary traffic only once up{namespace,deployment} says Prometheus scrapes
// it. Target relabelling (linkerd-viz's) labels up; metric relabelling,
// which some setups use instead, does not, and every canary would hold.
// linkerd-viz also copies every pod label, pod-template-hash among them, by
// which the gate counts only the pods of the canary's current ReplicaSet:
// without it, a pod of a canary rolled back a moment ago, still scraped,
// opens the gate for the next one, which then takes traffic that Prometheus
// does not see yet.
func (r *run) scrapeLabels(ctx context.Context, prom *analysis.Prom) {
	labelled, err := r.count(ctx, prom, "scrape targets with a deployment label", upQuery)
	if err != nil {
		r.add(CatPrometheus, Fail, "cannot count scrape targets", err.Error(), "")
		return
	}
	if labelled == 0 {
		r.add(CatPrometheus, Fail, "no scrape target's up series has a deployment label",
			"canaryd gives a canary traffic only once up{namespace,deployment=\"<name>-canary\"} == 1, so every canary would hold at step 0",
			"add namespace and deployment by target relabelling (relabel_configs, as linkerd-viz does), or run canaryd with --scrape-gate=false")
		return
	}
	hashed, err := r.count(ctx, prom, "scrape targets with a pod_template_hash label", hashQuery)
	if err != nil {
		r.add(CatPrometheus, Fail, "cannot count scrape targets", err.Error(), "")
		return
	}
	if hashed >= labelled {
		r.add(CatPrometheus, OK, fmt.Sprintf("Prometheus labels its scrape targets by deployment and pod_template_hash (%s)", plural(labelled, "target")), "", "")
		return
	}
	r.add(CatPrometheus, Warn, fmt.Sprintf("%d of %s labelled by deployment have no pod_template_hash label", labelled-hashed, plural(labelled, "scrape target")),
		"the scrape gate then counts every pod of <name>-canary, and a pod of a canary rolled back a moment ago can let the next one "+
			"take traffic before Prometheus scrapes it (those first requests go unjudged)",
		"copy the pod labels onto the targets (labelmap of __meta_kubernetes_pod_label_(.+), as linkerd-viz does), at least pod-template-hash")
}

// count runs a query that answers one number.
func (r *run) count(ctx context.Context, prom *analysis.Prom, name, q string) (int, error) {
	v, err := prom.Query(ctx, name, q)
	if err != nil {
		return 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return 0, fmt.Errorf("query %q: want one number, got %v", name, v)
	}
	return int(vec[0].Value), nil
}

// targets checks that each opted-in Deployment has inbound proxy series:
// one without is never judged, its checks are inconclusive and its
// rollouts hold.
func (r *run) targets(series map[string]int) {
	if len(r.deployments) == 0 {
		return
	}
	var missing []string
	for _, d := range r.deployments {
		if series[d.key()] == 0 {
			missing = append(missing, d.key())
		}
	}
	if len(missing) == 0 {
		r.add(CatPrometheus, OK, "Prometheus holds inbound proxy metrics of every opted-in Deployment ("+
			strconv.Itoa(len(r.deployments))+")", "", "")
		return
	}
	r.add(CatPrometheus, Warn, fmt.Sprintf("no inbound proxy metrics for %s", list(missing, 3)),
		"their checks will be inconclusive and their rollouts hold until traffic is measured",
		"mesh their pods (linkerd.io/inject) and send them traffic; a Deployment nobody calls has no metrics")
}
