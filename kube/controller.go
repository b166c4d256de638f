// Package kube is canaryd's hands: it watches opted-in Deployments and the
// objects canaryd owns, gathers a rollout.Observed snapshot, asks
// rollout.Decide what to do, and applies the answer with minimal writes,
// raising Events and log lines for every decision a user can see.
//
// It must never decide anything itself (when to step, promote or roll back is
// rollout's business) and never overwrite a concurrent change: every write of
// an existing object carries the resourceVersion it was computed from, and a
// conflict is answered by re-reading, not by retrying the same write.
package kube

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// Config wires a Controller. Zero values get the defaults noted.
type Config struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespaces to watch; empty watches all.
	Namespaces []string
	// Defaults are the cluster-wide rollout settings annotations override.
	Defaults rollout.Spec
	Analyzer analysis.Analyzer
	// AnalysisPeriod paces checks between step decisions (default 10s).
	AnalysisPeriod time.Duration
	// AnalysisTimeout bounds one check (default 10s).
	AnalysisTimeout time.Duration
	// NoScrapeGate gives a ready canary its first traffic without asking
	// Prometheus whether it scrapes the canary's pods yet. The gate needs an
	// Analyzer that is also an analysis.ScrapeProber.
	NoScrapeGate bool
	// ScrapeInterval is Prometheus's scrape interval of the proxies. With the
	// scrape probe's answer (when it last scraped the canary) the probes
	// between step decisions run just after the canary's scrapes; zero
	// leaves them a period apart wherever they fall.
	ScrapeInterval time.Duration
	// HookTimeout bounds one lifecycle webhook request (default 10s).
	HookTimeout time.Duration
	// SMIVersion is the TrafficSplit version written: v1alpha1 (default,
	// milli weights) or v1alpha2 (integer percent).
	SMIVersion string
	Workers    int // default 16
	// EventWriters is how many Events are written at once (default
	// eventWriters); one Deployment's always by the same writer.
	EventWriters int
	Resync       time.Duration // informer resync (default 10m)
	Log          *zap.Logger
	Clock        func() time.Time // default time.Now
	Recorder     record.EventRecorder
	// Notify, when set, hears every event canaryd raises, with the status
	// it came with (chat and webhook notifications). It must not block.
	Notify func(namespace, name string, e rollout.Event, st rollout.Status)

	// HTTPRouteVersion is the HTTPRoute API the httproute router writes:
	// "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1" or
	// "policy.linkerd.io/v1beta3"; empty: the first of these served.
	HTTPRouteVersion string
	// HTTPRouteRequireAccepted: a route's weights count as applied only once
	// its status says Accepted=True (set where a policy controller runs).
	HTTPRouteRequireAccepted bool
}

// Controller reconciles opted-in Deployments.
type Controller struct {
	cfg     Config
	log     *zap.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	sets    map[string]*informerSet // by namespace; "" when watching all
	routers map[string]router       // by canaryd.io/router value
	rec     record.EventRecorder
	metrics *Metrics
	hooks   *hookCaller

	mu     sync.Mutex
	probes map[string]time.Time  // last analysis per key: paces probes only
	posted map[string]postedHook // last post-rollout notice per key
	behind map[string]int        // behind-errors in a row per key
	// written is foo's resourceVersion after canaryd's last write of it, per
	// key: a cached foo at that version holds canaryd's last decision.
	written map[string]string

	synced chan struct{}
}

// New builds a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Dynamic == nil || cfg.Analyzer == nil {
		return nil, fmt.Errorf("kube: Client, Dynamic and Analyzer are required")
	}
	if cfg.AnalysisPeriod <= 0 {
		cfg.AnalysisPeriod = 10 * time.Second
	}
	if cfg.AnalysisTimeout <= 0 {
		cfg.AnalysisTimeout = 10 * time.Second
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 10 * time.Second
	}
	if cfg.SMIVersion == "" {
		cfg.SMIVersion = "v1alpha1"
	}
	if cfg.SMIVersion != "v1alpha1" && cfg.SMIVersion != "v1alpha2" {
		return nil, fmt.Errorf("kube: SMI version %q: want v1alpha1 or v1alpha2", cfg.SMIVersion)
	}
	if cfg.SMIVersion == "v1alpha2" {
		cfg.Defaults.SMITotal = 100
	} else {
		cfg.Defaults.SMITotal = 1000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.EventWriters <= 0 {
		cfg.EventWriters = eventWriters
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	metrics := newMetrics()
	c := &Controller{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "canaryd", MetricsProvider: queueMetrics{metrics.queueWait}}),
		cfg:     cfg,
		log:     cfg.Log,
		sets:    map[string]*informerSet{},
		probes:  map[string]time.Time{},
		posted:  map[string]postedHook{},
		behind:  map[string]int{},
		written: map[string]string{},
		synced:  make(chan struct{}),
		metrics: metrics,
		hooks:   newHookCaller(cfg.HookTimeout),
	}
	httpRoute, err := newHTTPRouteRouter(cfg, c.cachedSpec)
	if err != nil {
		return nil, err
	}
	c.routers = map[string]router{rollout.RouterSMI: &smiRouter{dyn: cfg.Dynamic, version: cfg.SMIVersion}, rollout.RouterHTTPRoute: httpRoute}
	served, err := servedResources(cfg.Client.Discovery(), c.routers)
	if err != nil {
		return nil, err
	}
	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	for _, ns := range namespaces {
		c.sets[ns] = newInformerSet(cfg.Client, cfg.Dynamic, ns, cfg.Resync, served, c.enqueueFor)
		c.watchServiceProfiles(c.sets[ns], ns)
	}
	c.rec = cfg.Recorder
	return c, nil
}

// Metrics exposes the controller's Prometheus collectors.
func (c *Controller) Metrics() *Metrics { return c.metrics }

// HasSynced is closed once every informer has synced: readiness.
func (c *Controller) HasSynced() <-chan struct{} { return c.synced }

// Run starts the informers and workers and blocks until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	defer runtime.HandleCrash()
	defer c.queue.ShutDown()
	if c.rec == nil {
		rec, stop := newEventRecorder(ctx, &typedcorev1.EventSinkImpl{Interface: c.cfg.Client.CoreV1().Events("")}, c.cfg.EventWriters)
		defer stop()
		c.rec = rec
	}
	var syncs []cache.InformerSynced
	for _, s := range c.sets {
		s.start(ctx.Done())
		syncs = append(syncs, s.synced...)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("kube: informers did not sync: %w", ctx.Err())
	}
	close(c.synced)
	c.log.Info("informers synced; reconciling", zap.Int("workers", c.cfg.Workers), zap.Strings("namespaces", c.cfg.Namespaces))
	var wg sync.WaitGroup
	for i := 0; i < c.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait.UntilWithContext(ctx, c.work, time.Second)
		}()
	}
	go c.reportQueueDepth(ctx)
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) work(ctx context.Context) {
	for c.next(ctx) {
	}
}

// next processes one key; every error comes here and is retried with rate
// limiting, the single place that decides about retries.
func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	start := time.Now()
	requeue, err := c.syncContained(ctx, key)
	c.metrics.observeSync(time.Since(start), err)
	var behind behindError
	switch {
	case errors.As(err, &behind):
		n := c.noteBehind(key, true)
		c.log.Debug("cache behind the API server; looking again", zap.String("deployment", key), zap.Int("inARow", n), zap.Error(err))
		c.queue.AddAfter(key, behindDelay(n))
		return true
	case err != nil:
		c.log.Warn("reconcile failed; retrying", zap.String("deployment", key), zap.Error(err))
		c.queue.AddRateLimited(key)
		return true
	}
	c.noteBehind(key, false)
	c.queue.Forget(key)
	if requeue > 0 {
		c.queue.AddAfter(key, requeue)
	}
	return true
}

// behindDelay is how long to wait before looking again after the n-th
// behind-error in a row: 5 ms, doubling, at most a second.
//
// Not the queue's rate limiter: its shared bucket lets 10 retries a second
// through after a burst of 100, for all keys together. A 409 because our
// cache had not yet seen kube-controller-manager's status update of foo is
// routine when many rollouts step at once (522 in one wave of 100 rollouts
// in the scale benchmark), and behind that bucket the 150th of a burst waits
// (150 - 100) / 10 = 5 s to write a status the next watch event has already
// made writable.
// These retries need no shared brake: each costs one request, the client's
// own rate limit bounds them all, and from the third in a row the sync reads
// foo live instead of trusting the cache.
func behindDelay(n int) time.Duration {
	const first, most = 5 * time.Millisecond, time.Second
	if n < 1 {
		n = 1
	}
	if n > 8 { // 5 ms << 8 would pass a second
		return most
	}
	return first << (n - 1)
}

// syncContained is sync with a panic turned into that key's error: a bug
// that one Deployment's objects trigger is logged with its stack and
// retried with backoff for that Deployment alone, instead of ending the
// process and, restart after restart, every other rollout with it.
func (c *Controller) syncContained(ctx context.Context, key string) (requeue time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("reconcile panicked; retrying this Deployment with backoff", zap.String("deployment", key),
				zap.Any("panic", r), zap.String("stack", string(debug.Stack())))
			requeue, err = 0, fmt.Errorf("reconcile panicked: %v", r)
		}
	}()
	return c.sync(ctx, key)
}

// noteBehind counts behind-errors in a row for key (reset on success).
func (c *Controller) noteBehind(key string, behind bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !behind {
		delete(c.behind, key)
		return 0
	}
	c.behind[key]++
	return c.behind[key]
}

// noteWritten records the resourceVersion canaryd's own write gave foo.
func (c *Controller) noteWritten(key, resourceVersion string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if resourceVersion == "" {
		delete(c.written, key)
		return
	}
	c.written[key] = resourceVersion
}

// holdsOwnWrite: the cached foo is the version canaryd's last write of it
// produced, so it carries canaryd's last decision (see ensureFresh).
func (c *Controller) holdsOwnWrite(key, resourceVersion string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.written[key]
	return ok && resourceVersion != "" && v == resourceVersion
}

func (c *Controller) behindStreak(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.behind[key]
}

func (c *Controller) enqueueFor(namespace, name string) {
	c.queue.Add(namespace + "/" + name)
}

func (c *Controller) setFor(namespace string) *informerSet {
	if s, ok := c.sets[namespace]; ok {
		return s
	}
	return c.sets[""]
}

func (c *Controller) lastProbe(key string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probes[key]
}

func (c *Controller) setProbe(key string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.IsZero() {
		delete(c.probes, key)
		return
	}
	c.probes[key] = t
}

// reportQueueDepth sets the queue depth gauge every second and, once, when
// start-up's first pass is over, hands the memory it used back to the OS.
func (c *Controller) reportQueueDepth(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	firstPass := afterFirstPass(c.cfg.Clock(), firstPassLimit, debug.FreeOSMemory)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := c.queue.Len()
			c.metrics.queueDepth.Set(float64(n))
			if firstPass(now, n) {
				c.log.Info("start-up done; memory it used returned to the OS")
			}
		}
	}
}

// firstPassLimit bounds the wait for an empty queue after start-up: with
// many rollouts due at once it may not empty for a while.
const firstPassLimit = 2 * time.Minute

// afterFirstPass returns a function to call with the queue's length now and
// then; it calls release once, the first time the queue is empty or limit
// has passed since start, and reports whether that call released.
//
// Start-up lists every watched object whole and then syncs every managed
// Deployment; the collector frees that garbage, but Go's scavenger returns
// the pages only slowly and only down to the next collection's target, so
// the process kept its start-up peak: at 2,000 managed Deployments
// (test/bench) 130 MB taken from the OS for a 52 MB live heap. One forced
// collection and return, costing a mark of the live heap, hands it back.
func afterFirstPass(start time.Time, limit time.Duration, release func()) func(now time.Time, queued int) bool {
	done := false
	return func(now time.Time, queued int) bool {
		if done || (queued > 0 && now.Sub(start) < limit) {
			return false
		}
		done = true
		release()
		return true
	}
}
