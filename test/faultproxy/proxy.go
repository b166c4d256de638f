// Package faultproxy is a fault-injecting HTTP proxy to put in front of
// kube-apiserver, so that a controller under test meets the API server's
// bad days on purpose: writes refused with 500, 429 or 409, writes carried
// out whose answer is lost, and every other request delayed.
//
// The proxy speaks plain HTTP on a loopback port to its clients and HTTPS to
// the API server with credentials of its own (the clients' kubeconfig, see
// WriteKubeconfig, carries none). Faults are drawn from a seeded source, so a
// failing run can be replayed with the same seed and the same traffic.
//
// A fault is answered the way kube-apiserver answers: a metav1.Status body
// with the code's reason (InternalError, TooManyRequests with Retry-After,
// Conflict), so client-go classifies it exactly as it would a real one.
//
// It must never listen on anything but loopback, never change a request it
// forwards, and never fail a read: reads are only delayed, because what is
// under test is how a controller handles refused and lost writes, and a
// watch cut by the proxy would test client-go instead.
package faultproxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config configures a Proxy. Upstream and TLS are required.
type Config struct {
	// Upstream is the API server's URL, e.g. https://127.0.0.1:6443.
	Upstream string
	// TLS verifies the upstream and presents the proxy's client certificate.
	TLS *tls.Config
	// Listen is the loopback address to serve on (default 127.0.0.1:0).
	Listen string
	// WriteFailRate is the share of writes (POST, PUT, PATCH, DELETE) that
	// fail, 0 to 1.
	WriteFailRate float64
	// Codes are the status codes a failed write gets, drawn uniformly
	// (default 500, 429, 409). Allowed: 409, 429, 500, 503, 504.
	Codes []int
	// LostShare is the share of failed writes with a 5xx code that are
	// forwarded first and only then answered with the error: the write
	// happened, its answer was lost. 0 to 1.
	LostShare float64
	// MaxDelay delays every request that is not failed by a uniform random
	// time in [0, MaxDelay].
	MaxDelay time.Duration
	// Seed seeds the fault draws.
	Seed uint64
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	cfg      Config
	upstream *url.URL
	rp       *httputil.ReverseProxy
	rt       http.RoundTripper
	ln       net.Listener
	srv      *http.Server

	mu      sync.Mutex
	rng     *rand.Rand
	enabled bool
	stats   Stats
	pending map[string]time.Time // write target → first unanswered fault since its last success
	conns   map[net.Conn]bool    // open client connections, to cut on a partition
	healed  chan struct{}        // nil unless partitioned; closed when the partition heals
	hold    string               // writes whose path contains this wait holdFor first ("": none)
	holdFor time.Duration
}

var allowedCodes = map[int]bool{409: true, 429: true, 500: true, 503: true, 504: true}

// New validates cfg and starts listening; Serve is already running when it
// returns. Close stops it.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == "" || cfg.TLS == nil {
		return nil, errors.New("faultproxy: Config.Upstream and Config.TLS are required")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: Config.Upstream %q: want https://host:port", cfg.Upstream)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("faultproxy: Config.Upstream: %w", err)
	}
	if cfg.WriteFailRate < 0 || cfg.WriteFailRate > 1 {
		return nil, fmt.Errorf("faultproxy: Config.WriteFailRate %v: want 0 to 1", cfg.WriteFailRate)
	}
	if cfg.LostShare < 0 || cfg.LostShare > 1 {
		return nil, fmt.Errorf("faultproxy: Config.LostShare %v: want 0 to 1", cfg.LostShare)
	}
	if cfg.MaxDelay < 0 {
		return nil, fmt.Errorf("faultproxy: Config.MaxDelay %s: want 0 or more", cfg.MaxDelay)
	}
	if len(cfg.Codes) == 0 {
		cfg.Codes = []int{500, 429, 409}
	}
	for _, c := range cfg.Codes {
		if !allowedCodes[c] {
			return nil, fmt.Errorf("faultproxy: Config.Codes: %d is not one of 409, 429, 500, 503, 504", c)
		}
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if err := checkLoopback(cfg.Listen); err != nil {
		return nil, fmt.Errorf("faultproxy: Config.Listen: %w", err)
	}
	rt := &http.Transport{
		TLSClientConfig:     cfg.TLS.Clone(),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	p := &Proxy{
		cfg: cfg, upstream: u, rt: rt, enabled: true,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		stats:   Stats{Failed: map[int]int{}},
		pending: map[string]time.Time{},
		conns:   map[net.Conn]bool{},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		Transport: rt,
		// Watches stream: pass every chunk on at once.
		FlushInterval: -1,
		ErrorHandler:  p.upstreamError,
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", cfg.Listen, err)
	}
	p.ln = ln
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ConnState: p.track}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// checkLoopback refuses any host that is not a loopback IP or "localhost".
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", hostport, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", host)
	}
	return nil
}

// URL is where clients reach the proxy: http://127.0.0.1:<port>.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops serving and drops open connections, watches included.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	if t, ok := p.rt.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}

// SetFaults turns fault injection (failures and delays) on or off; the
// proxy keeps forwarding either way.
func (p *Proxy) SetFaults(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// plan is what happens to one request.
type plan struct {
	code  int // 0: forward normally
	lost  bool
	delay time.Duration
}

func (p *Proxy) draw(write bool) plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.enabled {
		return plan{}
	}
	if write && p.rng.Float64() < p.cfg.WriteFailRate {
		code := p.cfg.Codes[p.rng.IntN(len(p.cfg.Codes))]
		return plan{code: code, lost: code >= 500 && p.rng.Float64() < p.cfg.LostShare}
	}
	var d time.Duration
	if p.cfg.MaxDelay > 0 {
		d = time.Duration(p.rng.Int64N(int64(p.cfg.MaxDelay) + 1))
	}
	return plan{delay: d}
}

// SetPartitioned cuts the proxy's clients off from the API server (on) or
// lets them through again (off). Cutting closes every open client
// connection, so watches end and requests in flight get no answer; requests
// made during the partition wait until it heals (or the client gives up)
// and then get a 503, as requests that timed out would.
func (p *Proxy) SetPartitioned(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.healed == nil:
		p.healed = make(chan struct{})
		for c := range p.conns {
			_ = c.Close()
		}
	case !on && p.healed != nil:
		close(p.healed)
		p.healed = nil
	}
}

// SetHold makes every write whose URL path contains pathPart wait d before
// it is forwarded (pathPart "" stops holding): one kind of write made slow
// on purpose, e.g. "/trafficsplits/" to delay only a controller's routing.
func (p *Proxy) SetHold(pathPart string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.holdFor = pathPart, d
}

// holdFor returns how long a write to path must wait before it is forwarded.
func (p *Proxy) heldFor(path string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == "" || !strings.Contains(path, p.hold) {
		return 0
	}
	p.stats.Held++
	return p.holdFor
}

func (p *Proxy) track(c net.Conn, state http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch state {
	case http.StateNew:
		p.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
	}
}

// partitioned returns the channel closed when the current partition heals,
// nil when there is none.
func (p *Proxy) partitioned() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healed
}

// ServeHTTP forwards one request, failing or delaying it as drawn.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isWrite(r.Method) {
		p.mu.Lock()
		p.stats.LastWriteAttempt = time.Now()
		p.mu.Unlock()
	}
	if healed := p.partitioned(); healed != nil {
		select {
		case <-healed:
		case <-r.Context().Done():
		}
		p.mu.Lock()
		p.stats.Partitioned++
		p.mu.Unlock()
		writeStatus(w, r, http.StatusServiceUnavailable)
		return
	}
	write := isWrite(r.Method)
	pl := p.draw(write)
	target := r.Method + " " + r.URL.Path
	switch {
	case pl.code != 0 && pl.lost:
		p.forwardAndLose(r)
		p.fault(target, pl)
		writeStatus(w, r, pl.code)
		return
	case pl.code != 0:
		p.fault(target, pl)
		writeStatus(w, r, pl.code)
		return
	}
	if write {
		pl.delay += p.heldFor(r.URL.Path)
	}
	if pl.delay > 0 {
		select {
		case <-time.After(pl.delay):
		case <-r.Context().Done():
			return
		}
	}
	// Counted as soon as the status is known, before it reaches the client:
	// a client that saw its write answered then sees it in Stats too.
	rec := &statusRecorder{ResponseWriter: w, onStatus: func(code int) { p.done(target, write, pl.delay > 0, code) }}
	p.rp.ServeHTTP(rec, r)
	rec.report(rec.status())
}

// forwardAndLose carries the request out upstream and throws the answer away.
func (p *Proxy) forwardAndLose(r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host, out.Host = p.upstream.Scheme, p.upstream.Host, p.upstream.Host
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		return // the write may or may not have happened: that is the fault being simulated
	}
	_ = resp.Body.Close()
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	p.mu.Lock()
	p.stats.UpstreamErrors++
	p.mu.Unlock()
	http.Error(w, "faultproxy: upstream: "+err.Error(), http.StatusBadGateway)
}

// statusRecorder remembers the status code written; it passes Flush on so
// that watches keep streaming.
type statusRecorder struct {
	http.ResponseWriter
	code     int
	onStatus func(code int) // called once, before the status is sent on
	reported bool
}

func (s *statusRecorder) report(code int) {
	if !s.reported {
		s.reported = true
		s.onStatus(code)
	}
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.report(s.code)
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	s.report(s.code)
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
