package meshsim

import (
	"math"
	"math/rand/v2"
	"time"
)

// Outcomes in meshsim_requests_total.
const (
	outcomeSuccess    = "success"
	outcomeFailure    = "failure"
	outcomeNoEndpoint = "no_endpoint"
)

// step advances the simulation by dt: it refreshes the world if the caches changed, then sends each apex its
// share of requests. Only one goroutine (Run's loop, or a test) calls it.
func (s *Sim) step(dt time.Duration) {
	s.refresh()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.world.apexes {
		n := s.requestCount(a, dt)
		for range n {
			s.serve(a)
		}
	}
}

// refresh rebuilds the world when an informer reported a change, resets the counters of pods that went or
// were replaced, and rewrites the targets file when its content changed.
func (s *Sim) refresh() {
	gen := s.watch.gen.Load()
	s.mu.Lock()
	stale := !s.built || s.builtGen != gen
	s.mu.Unlock()
	if !stale {
		if s.Addr() != s.targetsAddr {
			s.writeTargets(s.world) // Run started listening after the last build
		}
		return
	}
	w := s.buildWorld() // reads the caches only: no lock needed

	s.mu.Lock()
	s.world = w
	s.builtGen, s.built = gen, true
	for k, c := range s.proxies {
		if p, ok := w.pods[k]; !ok || p.uid != c.uid {
			delete(s.proxies, k) // the pod went (or was recreated under its name): its counters go too
		}
	}
	for k, p := range w.pods {
		c := s.proxies[k]
		if c == nil {
			c = newProxyCounters(p.uid)
			s.proxies[k] = c
		}
		// Series that the pod's behaviour can produce start at 0, so that Prometheus' increase() counts
		// their first requests too.
		c.ensure(200)
		if p.behaviour.errorRate > 0 {
			c.ensure(p.behaviour.errorCode)
		}
	}
	s.mu.Unlock()
	s.writeTargets(w)
}

// writeTargets rewrites the targets file if its content changed. Only the stepping goroutine calls it; w is
// immutable once built, so no lock is needed.
func (s *Sim) writeTargets(w *world) {
	if s.cfg.TargetsFile == "" {
		return
	}
	addr := s.Addr()
	if addr == s.targetsAddr && samePods(w.pods, s.targetPods) {
		return // the same versions of the same pods: the same file (rendering it was 6 % of a busy simulator)
	}
	data, err := renderTargets(addr, w)
	if err == nil && string(data) != string(s.lastTargets) {
		err = writeFileAtomic(s.cfg.TargetsFile, data)
	}
	if err != nil {
		// Not fatal: the next change retries, and a stale file only delays Prometheus' view.
		s.log.Warn("cannot write targets file", "path", s.cfg.TargetsFile, "err", err)
		return
	}
	s.lastTargets, s.targetsAddr, s.targetPods = data, addr, w.pods
}

// samePods reports whether two worlds hold the same podInfo for the same pods; a podInfo is made once per
// version of a pod (meshedPod), so that is the same content.
func samePods(a, b map[podKey]*podInfo) bool {
	if len(a) != len(b) || b == nil {
		return false
	}
	for k, p := range a {
		if b[k] != p {
			return false
		}
	}
	return true
}

// requestCount is how many requests apex a receives during dt. Deterministically it is rps × dt with the
// fraction carried to the next step: at 20 rps and 100 ms ticks that is exactly 2 per tick; at 3 rps it is
// 0,0,0,1,0,0,1,... (0.3 per tick), 3 per second on average with no drift. With Config.Poisson the count is a
// Poisson draw with the same mean.
func (s *Sim) requestCount(a *apex, dt time.Duration) int {
	mean := a.rps * dt.Seconds()
	if mean <= 0 {
		return 0
	}
	if s.cfg.Poisson {
		return poisson(s.rng, mean)
	}
	c := s.carry[a.key] + mean
	// The epsilon absorbs float error: ten steps of 0.1 sum to 0.9999999999999999, which must still be 1.
	n := math.Floor(c + 1e-9)
	s.carry[a.key] = c - n
	return int(n)
}

// poisson draws from a Poisson distribution: Knuth's product method for small means, a rounded normal
// approximation above 30, where its error is far below anything a test could see.
func poisson(r *rand.Rand, mean float64) int {
	if mean > 30 {
		n := math.Round(mean + math.Sqrt(mean)*r.NormFloat64())
		return int(math.Max(0, n))
	}
	limit := math.Exp(-mean)
	n, p := 0, r.Float64()
	for p > limit {
		n++
		p *= r.Float64()
	}
	return n
}

// serve sends one request to apex a: pick its headers, its route rule and backend, an endpoint of the
// backend, and the pod's answer. Called with s.mu held.
func (s *Sim) serve(a *apex) {
	var headers map[string]string
	if len(a.headers) > 0 {
		headers = pickHeaders(a.headers, s.rng.Float64())
	}
	backends := []weightedBackend{{svc: a.key, weight: 1}}
	switch {
	case a.split != nil:
		backends = a.split.backends
	case len(a.rules) > 0:
		rule, ok := pickRule(a.rules, headers)
		if !ok {
			s.record(a.key, "", outcomeFailure) // no route matched: the proxy answers 404 itself
			return
		}
		if len(rule.backends) > 0 {
			backends = rule.backends
		}
	}
	b, ok := pickBackend(backends, s.rng.Float64())
	if !ok {
		s.record(a.key, "", outcomeNoEndpoint)
		return
	}
	eps := s.world.backends[b]
	if len(eps) == 0 {
		s.record(a.key, b.name, outcomeNoEndpoint)
		return
	}
	i := s.rr[b] % uint64(len(eps))
	s.rr[b]++
	pk := eps[i]
	pod := s.world.pods[pk]
	status, ms := pod.behaviour.answer(s.rng)
	s.proxies[pk].observe(status, ms)
	if status >= 500 {
		s.record(a.key, b.name, outcomeFailure)
	} else {
		s.record(a.key, b.name, outcomeSuccess)
	}
}

// answer draws the pod's status and latency for one request.
func (b behaviour) answer(r *rand.Rand) (status int, ms float64) {
	status = 200
	if b.errorRate > 0 && r.Float64() < b.errorRate {
		status = b.errorCode
	}
	return status, b.medianMs * math.Exp(b.sigma*r.NormFloat64())
}

func (s *Sim) record(apex svcKey, backend, outcome string) {
	k := Route{Namespace: apex.ns, Service: apex.name, Backend: backend}
	c := s.stats[k]
	c.Requests++
	switch outcome {
	case outcomeFailure:
		c.Failures++
	case outcomeNoEndpoint:
		c.NoEndpoint++
	}
	s.stats[k] = c
	s.reqVec.WithLabelValues(apex.ns, apex.name, backend, outcome).Inc()
}
