package meshsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Config configures a Sim.
type Config struct {
	// RESTConfig reaches the API server, the only thing the simulator ever connects to.
	RESTConfig *rest.Config
	// ListenAddr is where the exposition server listens; it must be a loopback address. Default 127.0.0.1:0.
	ListenAddr string
	// TargetsFile, if set, receives Prometheus file_sd JSON with one target group per meshed pod.
	TargetsFile string
	// DefaultRPS is the request rate of an apex Service without a meshsim/rps annotation; 0 sends nothing.
	DefaultRPS float64
	// Tick is the simulation step. Default 100ms.
	Tick time.Duration
	// Seed seeds the random source: the same seed and the same cluster state give the same requests.
	Seed int64
	// Namespaces limits what is watched; empty means all namespaces.
	Namespaces []string
	// Poisson draws each tick's request count from a Poisson distribution instead of the deterministic
	// rate × tick with fractional carry. Both have the configured mean.
	Poisson bool
	// Logger receives warnings about objects the simulator skips. Default slog.Default().
	Logger *slog.Logger
}

// Route identifies one apex → backend pair in Stats. Backend is empty when a request found no backend at all
// (all weights 0, or no route rule matched).
type Route struct {
	Namespace string
	Service   string // the apex
	Backend   string // the backend Service the request was sent to
}

// Counts are cumulative request counters. Requests = successes + Failures + NoEndpoint.
type Counts struct {
	Requests uint64
	// Failures are requests a pod answered with 5xx, plus requests the proxy itself refused (no route matched).
	Failures uint64
	// NoEndpoint are requests whose backend had no ready endpoint (or which had no backend): the client saw a
	// failure, but no pod's series counts them.
	NoEndpoint uint64
}

// Sim is a running mesh simulator. Create it with New and start it with Run.
type Sim struct {
	cfg   Config
	log   *slog.Logger
	watch *watcher

	reg    *prometheus.Registry
	reqVec *prometheus.CounterVec

	ready chan struct{}

	// addrMu guards addr, set once listening starts.
	addrMu sync.Mutex
	addr   string

	// warnMu guards warned, which keeps each distinct warning to one log line.
	warnMu sync.Mutex
	warned map[string]bool

	// mu guards the simulation state below; the HTTP handlers read it, step writes it.
	mu       sync.Mutex
	world    *world
	built    bool   // world was built at least once
	builtGen uint64 // watcher generation the world was built from
	proxies  map[podKey]*proxyCounters
	stats    map[Route]Counts
	carry    map[svcKey]float64
	rr       map[svcKey]uint64
	rng      *rand.Rand

	// splits and pods remember what the last rebuild made of each cached object (the informers hand out a new
	// pointer for each new version of an object); the Next maps collect what this rebuild saw. Only the stepping
	// goroutine touches them.
	splits, splitsNext map[*unstructured.Unstructured]parsed
	pods, podsNext     map[*corev1.Pod]*podInfo // nil: not meshed

	// lastTargets, targetsAddr and targetPods are the last content written to TargetsFile, the address it
	// named and the pods it was rendered from; only the stepping goroutine touches them.
	lastTargets []byte
	targetsAddr string
	targetPods  map[podKey]*podInfo // the world's pods lastTargets was rendered from
}

// New validates cfg and builds the API clients. It contacts nothing; Run does.
func New(cfg Config) (*Sim, error) {
	if cfg.RESTConfig == nil {
		return nil, errors.New("meshsim: Config.RESTConfig is required")
	}
	kube, err := kubernetes.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("meshsim: kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("meshsim: dynamic client: %w", err)
	}
	return newSim(cfg, kube, dyn, kube.Discovery())
}

// newSim is New with injected clients, so that tests can use fake clientsets.
func newSim(cfg Config, kube kubernetes.Interface, dyn dynamic.Interface, disc discovery.DiscoveryInterface) (*Sim, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if err := checkLoopback(cfg.ListenAddr); err != nil {
		return nil, err
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.DefaultRPS < 0 {
		return nil, fmt.Errorf("meshsim: DefaultRPS %v is negative", cfg.DefaultRPS)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sim{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "meshsim"),
		reg:     prometheus.NewRegistry(),
		ready:   make(chan struct{}),
		warned:  map[string]bool{},
		proxies: map[podKey]*proxyCounters{},
		stats:   map[Route]Counts{},
		carry:   map[svcKey]float64{},
		rr:      map[svcKey]uint64{},
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6d65736873696d)),
		world:   &world{backends: map[svcKey][]podKey{}, pods: map[podKey]*podInfo{}},
	}
	s.reqVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshsim_requests_total",
		Help: "Requests the mesh simulator sent, by apex Service, backend Service and outcome (success, failure, no_endpoint).",
	}, []string{"namespace", "service", "backend", "outcome"})
	s.reg.MustRegister(s.reqVec)
	s.watch = newWatcher(kube, dyn, disc, cfg.Namespaces, s.log)
	return s, nil
}

// checkLoopback refuses a listen address that is not on the loopback interface: the exposition is for a
// Prometheus on the same machine and must not be reachable from elsewhere.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("meshsim: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("meshsim: listen address %q is not a loopback address", addr)
	}
	return nil
}

// Addr is the host:port the exposition server listens on, or "" before Run has started listening.
func (s *Sim) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Ready is closed once the server listens, the caches are synced and the first targets file is written.
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// Stats returns a copy of the per-apex, per-backend counters.
func (s *Sim) Stats() map[Route]Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Route]Counts, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// Run listens, starts the informers and simulates traffic until ctx is done. On the way out it empties the
// targets file (so that Prometheus drops the targets) and stops the server.
func (s *Sim) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("meshsim: listen: %w", err)
	}
	s.addrMu.Lock()
	s.addr = ln.Addr().String()
	s.addrMu.Unlock()

	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx) // best effort: the process is stopping either way
	}()

	if err := s.watch.start(ctx); err != nil {
		return err
	}
	go s.rediscover(ctx)

	s.step(0)
	close(s.ready)
	s.log.Info("mesh simulator running", "addr", s.Addr(), "targets", s.cfg.TargetsFile)

	ticker := time.NewTicker(s.cfg.Tick)
	defer ticker.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return s.cleanup()
		case err := <-serveErr:
			return fmt.Errorf("meshsim: serve: %w", err)
		case now := <-ticker.C:
			// Use the measured elapsed time, not the nominal tick, so that a slow step or a dropped tick does
			// not lower the rate; cap it so that a suspended process does not release a burst of minutes.
			dt := now.Sub(last)
			last = now
			if dt > 10*s.cfg.Tick {
				dt = 10 * s.cfg.Tick
			}
			s.step(dt)
		}
	}
}

// rediscover looks for newly installed CRDs (TrafficSplit, HTTPRoute) now and then, so that a harness that
// installs them after starting the simulator still gets them watched.
func (s *Sim) rediscover(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.watch.discover(ctx)
		}
	}
}

func (s *Sim) cleanup() error {
	if s.cfg.TargetsFile == "" {
		return nil
	}
	if err := writeFileAtomic(s.cfg.TargetsFile, []byte("[]\n")); err != nil {
		return fmt.Errorf("meshsim: empty targets file: %w", err)
	}
	return nil
}

// warnOnce logs a warning the first time key is seen: world rebuilds happen on every change, and the same odd
// object would otherwise be reported on each of them.
func (s *Sim) warnOnce(key, msg string, args ...any) {
	s.warnMu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.warnMu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}
