package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/kube"
	"github.com/canaryd/canaryd/notify"
	"github.com/canaryd/canaryd/rollout"
)

type options struct {
	kubeconfig, namespaces, listen, logLevel, logFormat string
	workers, eventWriters                               int
	kubeQPS                                             float64
	kubeBurst                                           int
	analysisPeriod, analysisTimeout, scrapeInterval     time.Duration
	hookTimeout                                         time.Duration
	smiVersion, checksFile, notifyConfig                string
	prom                                                analysis.ClientConfig
	judge                                               analysis.JudgeConfig
	defaults                                            map[string]*string
	leaderElect                                         bool
	leaseNamespace, leaseName                           string
	leaseDuration                                       time.Duration
	pprof                                               bool
	noScrapeGate                                        bool
	shareQueries                                        bool
	httpRouteVersion                                    string
	httpRouteRequireAccepted                            bool
}

// defaultFlags maps --default-<key> flags onto the annotations they
// default, so flags and annotations share one parser and one set of errors.
var defaultFlags = []struct{ key, value string }{
	{rollout.KeyRouter, "smi"}, {rollout.KeySteps, "100m,200m,500m"}, {rollout.KeyInterval, "1m"},
	{rollout.KeyMaxFailures, "2"}, {rollout.KeyMinSuccessRate, "99"}, {rollout.KeyMaxLatencyP99, "500ms"},
	{rollout.KeyMinRequests, "20"}, {rollout.KeyProgressDeadline, "10m"}, {rollout.KeyOnInconclusive, "hold"},
	{rollout.KeyManualPromotion, "false"}, {rollout.KeyWindow, ""},
}

func parseFlags(args []string) (*options, error) {
	o := &options{defaults: map[string]*string{}}
	fs := flag.NewFlagSet("canaryd run", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty: in-cluster configuration")
	fs.StringVar(&o.namespaces, "namespaces", "", "comma-separated namespaces to watch; empty: all")
	fs.StringVar(&o.listen, "listen", ":8080", "address of /metrics, /healthz and /readyz")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "json or console")
	fs.IntVar(&o.workers, "workers", 16, "Deployments reconciled in parallel (each mostly waits on the API server and Prometheus)")
	fs.IntVar(&o.eventWriters, "event-writers", 8, "Events written in parallel (each Deployment's by the same writer, in order)")
	fs.Float64Var(&o.kubeQPS, "kube-api-qps", 200, "steady rate of requests to the API server, per second")
	fs.IntVar(&o.kubeBurst, "kube-api-burst", 400, "requests to the API server allowed at once above --kube-api-qps")
	fs.DurationVar(&o.analysisPeriod, "analysis-period", 10*time.Second, "how often to check a canary between step decisions")
	fs.DurationVar(&o.analysisTimeout, "analysis-timeout", 10*time.Second, "time limit of one check")
	fs.DurationVar(&o.hookTimeout, "hook-timeout", 10*time.Second, "time limit of one lifecycle webhook request")
	fs.DurationVar(&o.scrapeInterval, "scrape-interval", analysis.DefaultScrapeInterval, "Prometheus's scrape interval of the Linkerd proxies")
	scrapeGate := fs.Bool("scrape-gate", true, "give a ready canary its first traffic only once Prometheus scrapes its pods (up{namespace,deployment} == 1)")
	shareQueries := fs.Bool("share-queries", false, "checks made at the same moment ask Prometheus together, one query per question instead of one per check: fewer queries for a backend that limits or bills them, at the cost of waiting for each other")
	fs.StringVar(&o.smiVersion, "smi-version", "v1alpha1", "TrafficSplit version to write: v1alpha1 (milli weights) or v1alpha2")
	fs.StringVar(&o.httpRouteVersion, "httproute-version", "", "HTTPRoute API to write: gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1 or policy.linkerd.io/v1beta3; empty: the first served")
	fs.BoolVar(&o.httpRouteRequireAccepted, "httproute-require-accepted", false, "count an HTTPRoute's weights as applied only once its status says Accepted (needs Linkerd's policy controller)")
	fs.StringVar(&o.checksFile, "checks-file", "", "YAML file of custom analysis checks")
	fs.StringVar(&o.notifyConfig, "notify-config", "", "file configuring Slack and webhook notifications (see notify/)")
	fs.StringVar(&o.prom.Address, "prometheus-url", "http://prometheus.linkerd-viz.svc.cluster.local:9090", "Prometheus base URL")
	fs.DurationVar(&o.prom.Timeout, "prometheus-timeout", analysis.DefaultQueryTimeout, "time limit of one query")
	fs.StringVar(&o.prom.BearerTokenFile, "prometheus-bearer-token-file", "", "file with a bearer token for Prometheus")
	fs.StringVar(&o.prom.Username, "prometheus-username", "", "basic auth user for Prometheus")
	fs.StringVar(&o.prom.PasswordFile, "prometheus-password-file", "", "file with the basic auth password")
	fs.StringVar(&o.prom.CAFile, "prometheus-ca-file", "", "CA bundle to verify Prometheus")
	fs.BoolVar(&o.prom.InsecureSkipVerify, "prometheus-insecure-skip-verify", false, "do not verify Prometheus's certificate")
	headers := fs.String("prometheus-headers", "", "extra request headers, e.g. X-Scope-OrgID=team-a,X-Other=1")
	fs.Float64Var(&o.judge.Alpha, "judge-alpha", analysis.DefaultAlpha, "bound on rolling back a good canary")
	fs.Float64Var(&o.judge.Beta, "judge-beta", analysis.DefaultBeta, "bound on missing a bad canary")
	fs.Float64Var(&o.judge.Tolerance, "judge-tolerance", analysis.DefaultTolerance, "percentage points the canary's error share may exceed stable's")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "take a Lease before reconciling (run several replicas)")
	fs.StringVar(&o.leaseNamespace, "leader-election-namespace", "canaryd", "namespace of the Lease")
	fs.StringVar(&o.leaseName, "leader-election-id", "canaryd", "name of the Lease")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease", 15*time.Second, "lease duration")
	fs.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof/ on the --listen address (profiling)")
	for _, d := range defaultFlags {
		o.defaults[d.key] = fs.String("default-"+strings.TrimPrefix(d.key, rollout.Prefix), d.value, "cluster default of "+d.key)
	}
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	o.noScrapeGate = !*scrapeGate
	o.shareQueries = *shareQueries
	switch {
	case o.workers < 1:
		return nil, fmt.Errorf("--workers %d: want at least 1", o.workers)
	case o.eventWriters < 1:
		return nil, fmt.Errorf("--event-writers %d: want at least 1", o.eventWriters)
	case !(o.kubeQPS > 0):
		return nil, fmt.Errorf("--kube-api-qps %v: want more than 0", o.kubeQPS)
	case o.kubeBurst < 1:
		return nil, fmt.Errorf("--kube-api-burst %d: want at least 1", o.kubeBurst)
	}
	if *headers != "" {
		o.prom.Headers = map[string]string{}
		for _, h := range strings.Split(*headers, ",") {
			k, v, ok := strings.Cut(h, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--prometheus-headers: %q is not name=value", h)
			}
			o.prom.Headers[k] = v
		}
	}
	return o, nil
}

// defaultSpec turns the --default-* flags into the cluster defaults.
func (o *options) defaultSpec(checks []analysis.Check) (rollout.Spec, error) {
	ann := map[string]string{}
	for k, v := range o.defaults {
		if *v != "" {
			ann[k] = *v
		}
	}
	base := rollout.DefaultSpec()
	base.KnownChecks = []string{}
	for _, c := range checks {
		base.KnownChecks = append(base.KnownChecks, c.Name)
	}
	spec, err := rollout.ParseSpec(ann, base)
	if err != nil {
		return spec, fmt.Errorf("defaults: %s", strings.ReplaceAll(err.Error(), rollout.Prefix, "--default-"))
	}
	return spec, nil
}

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
	} else if format != "json" {
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	return cfg.Build()
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// defaultGCPercent is the collector's target when GOGC is not set: the heap
// may grow by half its live size between collections, not by all of it.
// canaryd's heap is almost all long-lived informer caches with a low
// allocation rate, so collections are cheap and rare either way, while the
// headroom is most of the process's memory: at 2,000 managed Deployments
// (test/bench) the live heap was 47 MB and the idle RSS 175 MB with Go's
// default of 100.
const defaultGCPercent = 50

func serve(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if os.Getenv("GOGC") == "" { // an operator's GOGC is applied by the runtime already
		debug.SetGCPercent(defaultGCPercent)
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
	analyzer, err := analysis.NewPrometheus(analysis.Config{Client: o.prom, Judge: o.judge, Checks: checks, ScrapeInterval: o.scrapeInterval, Share: o.shareQueries})
	if err != nil {
		return err
	}
	var notifier *notify.Notifier
	if o.notifyConfig != "" {
		ncfg, err := notify.LoadConfig(o.notifyConfig)
		if err != nil {
			return err
		}
		if notifier, err = notify.New(ncfg, notify.Options{Log: log.Named("notify")}); err != nil {
			return err
		}
	}
	rc, err := restConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	rc.UserAgent = "canaryd/" + Version
	rc.QPS, rc.Burst = float32(o.kubeQPS), o.kubeBurst
	// The controller's clients go through the write fence (armed only under
	// leader election); the elector keeps a plain client of its own.
	fence := &writeFence{lease: o.leaseDuration, margin: o.leaseDuration / 7}
	electionConfig := rest.CopyConfig(rc)
	rc.Wrap(fence.wrap)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	var namespaces []string
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	var notifyHook func(string, string, rollout.Event, rollout.Status)
	if notifier != nil {
		notifyHook = notifier.Notify
	}
	ctrl, err := kube.New(kube.Config{
		Notify: notifyHook,
		Client: client, Dynamic: dyn, Namespaces: namespaces, Defaults: defaults, Analyzer: analyzer,
		AnalysisPeriod: o.analysisPeriod, AnalysisTimeout: o.analysisTimeout, NoScrapeGate: o.noScrapeGate, ScrapeInterval: o.scrapeInterval, HookTimeout: o.hookTimeout, SMIVersion: o.smiVersion,
		Workers: o.workers, EventWriters: o.eventWriters, Log: log,
		HTTPRouteVersion: o.httpRouteVersion, HTTPRouteRequireAccepted: o.httpRouteRequireAccepted,
	})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := ctrl.Metrics().Register(reg); err != nil {
		return err
	}
	if notifier != nil {
		if err := notifier.Register(reg); err != nil {
			return err
		}
		go func() { _ = notifier.Run(ctx) }()
	}
	if err := kube.RegisterClientMetrics(reg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	srv := &http.Server{Handler: endpoints(reg, ctrl.HasSynced(), o.pprof), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("canaryd starting", zap.String("version", Version), zap.String("listen", ln.Addr().String()),
		zap.String("prometheus", o.prom.Address), zap.Strings("namespaces", namespaces))
	if !o.leaderElect {
		ctrl.Metrics().Leader.Set(1)
		return ctrl.Run(ctx)
	}
	electionClient, err := kubernetes.NewForConfig(electionConfig)
	if err != nil {
		return err
	}
	return runElected(ctx, o, electionClient, fence, ctrl, log)
}

func endpoints(reg *prometheus.Registry, synced <-chan struct{}, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-synced:
			_, _ = w.Write([]byte("ok\n"))
		default:
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
		}
	})
	return mux
}

// runElected reconciles only while holding the Lease. Losing it ends the
// process at once: a former leader must not write a moment longer, and the
// new leader resumes from the status annotations.
func runElected(ctx context.Context, o *options, client kubernetes.Interface, fence *writeFence, ctrl *kube.Controller, log *zap.Logger) error {
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	inner, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leaseNamespace, o.leaseName, nil, client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return err
	}
	lock := &fencedLock{Interface: inner}
	fence.arm(lock)
	retry := fence.margin
	lost := errors.New("leader lease lost")
	var result error
	// Ending the controller ends the election too: a process that stopped
	// reconciling must not hold (and renew) the lease.
	ectx, ecancel := context.WithCancel(ctx)
	defer ecancel()
	leaderelection.RunOrDie(ectx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true,
		LeaseDuration: o.leaseDuration, RenewDeadline: o.leaseDuration * 2 / 3, RetryPeriod: retry,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				ctrl.Metrics().Leader.Set(1)
				log.Info("leading", zap.String("identity", id))
				// Every API call of the controller uses this context: it ends
				// a retry period before the lease could pass to another
				// replica, so the old leader has stopped writing by then.
				fenced, cancel := lock.fence(lctx, o.leaseDuration, retry, 50*time.Millisecond)
				defer cancel()
				defer ecancel()
				if err := ctrl.Run(fenced); err != nil {
					result = err
				}
				if lctx.Err() == nil && fenced.Err() != nil && ctx.Err() == nil {
					log.Error("lease not renewed in time; stopped reconciling before it could expire", zap.String("identity", id),
						zap.Time("lastRenewal", lock.lastRenewal()))
					result = lost
				}
			},
			OnStoppedLeading: func() {
				ctrl.Metrics().Leader.Set(0)
				if ctx.Err() == nil {
					log.Error("lost the leader lease; exiting", zap.String("identity", id))
					result = lost
				}
			},
		},
	})
	return result
}
