package faultproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Stats count what the proxy did. Recovery is measured per write target
// (method and path): from the first injected fault on it to the next real
// answer below 500 for the same target.
type Stats struct {
	Requests int
	Writes   int
	// Failed counts injected failures by status code; Lost those of them
	// that were forwarded first.
	Failed  map[int]int
	Lost    int
	Delayed int
	// UpstreamErrors are requests the API server itself could not be
	// reached for (502 to the client): not injected.
	UpstreamErrors int
	// Partitioned are requests refused by a partition (SetPartitioned);
	// Held are writes made to wait by SetHold.
	Partitioned int
	Held        int
	// LastWrite is when a write last went through to the API server and
	// was answered (zero if none did); LastWriteAttempt is when a client
	// last sent one, whatever became of it (partitioned, failed, forwarded).
	LastWrite        time.Time
	LastWriteAttempt time.Time
	// Recovered faults were followed by a real answer on the same target;
	// WorstRecovery is the longest such wait. Unrecovered targets are still
	// waiting (the client gave up or has not retried yet).
	Recovered     int
	WorstRecovery time.Duration
	Unrecovered   int
}

// Faults is the total of injected failures.
func (s Stats) Faults() int {
	n := 0
	for _, c := range s.Failed {
		n += c
	}
	return n
}

func (s Stats) String() string {
	return fmt.Sprintf("%d requests, %d writes, %d faults %v (%d lost answers), %d delayed, %d upstream errors, %d refused by a partition, %d recovered (worst %s), %d unrecovered",
		s.Requests, s.Writes, s.Faults(), s.Failed, s.Lost, s.Delayed, s.UpstreamErrors, s.Partitioned, s.Recovered, s.WorstRecovery.Round(time.Millisecond), s.Unrecovered)
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Failed = make(map[int]int, len(p.stats.Failed))
	for k, v := range p.stats.Failed {
		s.Failed[k] = v
	}
	s.Unrecovered = len(p.pending)
	return s
}

func (p *Proxy) fault(target string, pl plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	p.stats.Writes++
	p.stats.Failed[pl.code]++
	if pl.lost {
		p.stats.Lost++
	}
	if _, ok := p.pending[target]; !ok {
		p.pending[target] = time.Now()
	}
}

func (p *Proxy) done(target string, write, delayed bool, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	if delayed {
		p.stats.Delayed++
	}
	if !write {
		return
	}
	p.stats.Writes++
	p.stats.LastWrite = time.Now()
	if since, ok := p.pending[target]; ok && code < 500 {
		delete(p.pending, target)
		p.stats.Recovered++
		if d := time.Since(since); d > p.stats.WorstRecovery {
			p.stats.WorstRecovery = d
		}
	}
}

// writeStatus answers like kube-apiserver does for code: a metav1.Status
// with the matching reason, and Retry-After where the server sends it.
func writeStatus(w http.ResponseWriter, r *http.Request, code int) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Code:     int32(code),
	}
	what := r.Method + " " + r.URL.Path
	switch code {
	case http.StatusConflict:
		st.Reason = metav1.StatusReasonConflict
		st.Message = "Operation cannot be fulfilled on " + what + ": the object has been modified; please apply your changes to the latest version and try again (injected by faultproxy)"
	case http.StatusTooManyRequests:
		st.Reason = metav1.StatusReasonTooManyRequests
		st.Message = "too many requests, please try again later (injected by faultproxy)"
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		w.Header().Set("Retry-After", strconv.Itoa(1))
	case http.StatusServiceUnavailable:
		st.Reason = metav1.StatusReasonServiceUnavailable
		st.Message = "the server is currently unable to handle the request (injected by faultproxy)"
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		w.Header().Set("Retry-After", strconv.Itoa(1))
	case http.StatusGatewayTimeout:
		st.Reason = metav1.StatusReasonTimeout
		st.Message = "the server was unable to return a response in the time allotted (injected by faultproxy)"
	default:
		st.Reason = metav1.StatusReasonInternalError
		st.Message = "an error on the server has prevented the request from succeeding: " + what + " (injected by faultproxy)"
	}
	b, err := json.Marshal(st)
	if err != nil {
		// metav1.Status holds only strings and numbers: it always marshals.
		panic(fmt.Sprintf("faultproxy: encoding a Status: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
