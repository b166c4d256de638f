package meshsim

import (
	"bytes"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler serves the simulator's own metrics and each pod's proxy exposition:
//
//	GET /metrics                    meshsim_requests_total
//	GET /pods/<ns>/<pod>/metrics    the pod's proxy counters, Linkerd format
func (s *Sim) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /pods/{ns}/{pod}/metrics", func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.podMetrics(r.PathValue("ns"), r.PathValue("pod"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(body) // the scraper went away: nothing to do about it
	})
	return mux
}

// podMetrics renders one pod's exposition, or false if the pod is not (or no longer) meshed.
func (s *Sim) podMetrics(ns, name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := podKey{ns, name}
	p, ok := s.world.pods[k]
	c := s.proxies[k]
	if !ok || c == nil {
		return nil, false
	}
	var buf bytes.Buffer
	if err := writeExposition(&buf, identityOf(p), c); err != nil {
		return nil, false // a bytes.Buffer does not fail to write
	}
	return buf.Bytes(), true
}
