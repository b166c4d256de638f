package main

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/checkup"
	"github.com/canaryd/canaryd/rollout"
)

// check runs package checkup as the person at the terminal: RBAC is
// reviewed for the identity in use, so check canaryd's own with
// --as=system:serviceaccount:<ns>:<name> (or run `canaryd check` in its pod).
func (a *app) check(ctx context.Context, args []string) error {
	fs := a.flags("check")
	var prom analysis.ClientConfig
	fs.StringVar(&prom.Address, "prometheus-url", "", "Prometheus base URL canaryd queries (e.g. after kubectl port-forward); empty skips the Prometheus checks")
	fs.StringVar(&prom.BearerTokenFile, "prometheus-bearer-token-file", "", "file with a bearer token for Prometheus")
	fs.StringVar(&prom.CAFile, "prometheus-ca-file", "", "CA bundle to verify Prometheus")
	fs.BoolVar(&prom.InsecureSkipVerify, "prometheus-insecure-skip-verify", false, "do not verify Prometheus's certificate")
	smi := fs.String("smi-version", "v1alpha1", "TrafficSplit version canaryd writes (its --smi-version)")
	httpRoute := fs.String("httproute-version", "", "HTTPRoute API canaryd writes (its --httproute-version); empty: the first served, as canaryd does")
	router := fs.String("default-router", rollout.RouterSMI, "canaryd's --default-router")
	leaseNS := fs.String("leader-election-namespace", "", "with canaryd's --leader-elect: the namespace of its Lease")
	rest, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("check takes no arguments (got %v)", rest)
	}
	var gv schema.GroupVersion
	if *httpRoute != "" {
		if gv, err = schema.ParseGroupVersion(*httpRoute); err != nil || gv.Group == "" || gv.Version == "" {
			return usageError("--httproute-version %q: want group/version, e.g. gateway.networking.k8s.io/v1 or policy.linkerd.io/v1beta3", *httpRoute)
		}
	}
	defaults, err := rollout.ParseSpec(map[string]string{rollout.KeyRouter: *router}, rollout.DefaultSpec())
	if err != nil {
		return usageError("--default-router: %w", err)
	}
	if *smi != "v1alpha1" && *smi != "v1alpha2" {
		return usageError("--smi-version %q: want v1alpha1 or v1alpha2", *smi)
	}
	if err := a.connect(); err != nil {
		return err
	}
	cfg := checkup.Config{Client: a.client, Dynamic: a.dyn, Host: a.host, Defaults: defaults, SMIVersion: *smi, HTTPRoute: gv}
	if a.overrides.Context.Namespace != "" {
		cfg.Namespaces = []string{a.namespace} // -n given: check as a canaryd watching that namespace
	}
	if *leaseNS != "" {
		cfg.Lease = &checkup.Lease{Namespace: *leaseNS, Name: "canaryd"}
	}
	if prom.Address != "" {
		cfg.Prometheus = &analysis.Config{Client: prom}
	} else {
		cfg.PrometheusSkipped = "no --prometheus-url given"
	}
	report := checkup.Run(ctx, cfg)
	if err := report.Print(a.out); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if report.Failed() {
		return no("%d of %d checks failed", report.Count(checkup.Fail), len(report.Results))
	}
	return nil
}
