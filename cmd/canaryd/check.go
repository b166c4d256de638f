package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/checkup"
)

// check runs the checks of package checkup with exactly the flags `canaryd
// run` takes, so that `canaryd check` beside a running canaryd (same args,
// same ServiceAccount) answers whether that canaryd can work.
func check(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	var checks []analysis.Check
	if o.checksFile != "" {
		if checks, err = analysis.LoadChecks(o.checksFile); err != nil {
			return err
		}
	}
	defaults, err := o.defaultSpec(checks)
	if err != nil {
		return err
	}
	rc, err := restConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = "canaryd-check/" + Version
	rc.Timeout = 15 * time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	cfg := checkup.Config{
		Client: client, Dynamic: dyn, Host: rc.Host, Defaults: defaults, SMIVersion: o.smiVersion,
		Prometheus: &analysis.Config{Client: o.prom, Judge: o.judge, Checks: checks, ScrapeInterval: o.scrapeInterval},
	}
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			cfg.Namespaces = append(cfg.Namespaces, ns)
		}
	}
	if o.httpRouteVersion != "" {
		gv, err := schema.ParseGroupVersion(o.httpRouteVersion)
		if err != nil || gv.Group == "" || gv.Version == "" {
			return fmt.Errorf("--httproute-version %q: want group/version, e.g. gateway.networking.k8s.io/v1", o.httpRouteVersion)
		}
		cfg.HTTPRoute = gv
	}
	if o.leaderElect {
		cfg.Lease = &checkup.Lease{Namespace: o.leaseNamespace, Name: o.leaseName}
	}
	report := checkup.Run(ctx, cfg)
	if err := report.Print(os.Stdout); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if report.Failed() {
		return fmt.Errorf("%d of %d checks failed", report.Count(checkup.Fail), len(report.Results))
	}
	return nil
}
