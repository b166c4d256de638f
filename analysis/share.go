package analysis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// Checks made at the same moment share their built-in queries (Config.Share).
//
// Every check asks Prometheus the same two questions (responses and latency
// buckets, each now, a window ago and when the canary started), each about
// one canary and its stable. When many rollouts are due at once —
// 200 steps falling due within a second at N = 2,000 in the scale benchmark —
// that was 800 queries of a handful of series each, and each check waited in
// Prometheus's queue behind the others (0.26 s a check there, 0.04 s on an
// idle machine). Sharing was meant to save each query's fixed costs (the
// request, parsing, a series lookup per selector).
//
// A lane runs one question for many checks as one query: its selector names
// every canary and stable, its result is grouped by namespace and deployment,
// and each check reads its own rows back. It works like a group commit: the
// first check to ask finds the lane idle and its query goes out at once,
// alone, evaluated at that check's own time, as without sharing; checks that
// ask while it is out wait for it to return and then go together in the
// next one. So an idle controller adds no wait, and a busy one sends a query
// per question and per round trip instead of one per check.
//
// A shared query is evaluated at the latest of its checks' times. The others
// get a window ending a little later than they asked (at most one round trip
// of Prometheus, 0.1–0.3 s under that load), which only adds data; the range
// since each canary started is computed at that time, so it still starts at
// the canary's start. Checks whose ranges differ (another analysis window, a
// canary started another second) go in the same round as separate queries.
//
// Measured in the scale benchmark (N = 2,000, 2 cores, same run, two waves
// each, when a check still made four queries): 2.6 queries per check instead
// of 4.2, but Prometheus used the same
// CPU either way (its cost is reading each series' samples, which a shared
// query reads all the same) and a check took 0.35–0.43 s instead of
// 0.28–0.34 s, for waiting on the round before its own. So it is off by
// default, for backends that limit or bill the queries themselves.

// lane is one of the two built-in questions of a check.
type lane int

const (
	laneCounts  lane = iota // responses by classification
	laneBuckets             // latency buckets
	lanes
)

// ranges are how far back a check reads its counters: the threshold
// window, and the time since the canary started (0: not asked, the judge is
// off).
type ranges struct{ window, since time.Duration }

// maxShared bounds the checks in one query, and so its length.
const maxShared = 64

// ask is one check's question on a lane.
type ask struct {
	member
	now time.Time
	// rng is the query's ranges for an evaluation at `at`.
	rng  func(at time.Time) ranges
	done chan struct{}
	// The answer: the check's own rows and the ranges they were evaluated
	// over, or the error.
	rows model.Vector
	used ranges
	err  error
}

// sharer runs the lanes. With solo set every ask is its own query, at once.
type sharer struct {
	query     func(ctx context.Context, name, q string, at time.Time) (model.Value, error)
	adminPort int
	solo      bool

	mu      sync.Mutex
	busy    [lanes]bool
	waiting [lanes][]*ask
}

// ask puts a question on lane l and waits for its answer or ctx.
func (s *sharer) ask(ctx context.Context, l lane, a *ask) error {
	a.done = make(chan struct{})
	if s.solo {
		s.round(ctx, l, []*ask{a})
		return a.err
	}
	s.mu.Lock()
	if s.busy[l] {
		s.waiting[l] = append(s.waiting[l], a)
		s.mu.Unlock()
	} else {
		s.busy[l] = true
		s.mu.Unlock()
		// The lane's rounds outlive this check if others join: they must not
		// end with its context. The client's timeout bounds each one.
		go s.drive(context.WithoutCancel(ctx), l, []*ask{a})
	}
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for a shared query: %w", ctx.Err())
	}
}

// drive runs rounds on lane l until no check is waiting.
func (s *sharer) drive(ctx context.Context, l lane, batch []*ask) {
	for len(batch) > 0 {
		s.round(ctx, l, batch)
		s.mu.Lock()
		n := min(len(s.waiting[l]), maxShared)
		batch = s.waiting[l][:n:n]
		s.waiting[l] = slices.Clone(s.waiting[l][n:])
		if len(batch) == 0 {
			s.busy[l] = false
		}
		s.mu.Unlock()
	}
}

// round evaluates a batch at its latest time: one query per distinct range,
// run at once, each check answered from its own rows.
func (s *sharer) round(ctx context.Context, l lane, batch []*ask) {
	var at time.Time
	for _, a := range batch {
		if a.now.After(at) {
			at = a.now
		}
	}
	byRange := map[ranges][]*ask{}
	for _, a := range batch {
		a.used = a.rng(at)
		byRange[a.used] = append(byRange[a.used], a)
	}
	var wg sync.WaitGroup
	for rng, group := range byRange {
		wg.Go(func() {
			ms := make([]member, len(group))
			for i, a := range group {
				ms[i] = a.member
			}
			b := newBuilder(s.adminPort, ms...)
			name, q := l.render(b, rng)
			if len(group) > 1 {
				name += fmt.Sprintf(" (shared by %d checks)", len(group))
			}
			v, err := s.query(ctx, name, q, at)
			var vec model.Vector
			if err == nil {
				var ok bool
				if vec, ok = v.(model.Vector); !ok {
					err = &queryError{Name: name, Query: q, Err: fmt.Errorf("want a vector, got %s", v.Type())}
				}
			}
			for _, a := range group {
				a.rows, a.err = a.pick(vec), err
				close(a.done)
			}
		})
	}
	wg.Wait()
}

// render is lane l's query over rng, and the name an operator reads when it fails.
func (l lane) render(b queryBuilder, rng ranges) (name, q string) {
	rs := []string{promRange(rng.window)}
	over := "over " + promDuration(rng.window)
	if rng.since > 0 {
		rs = append(rs, promRange(rng.since))
		over += " and since canary start (" + promDuration(rng.since) + ")"
	}
	if l == laneCounts {
		return "canary and stable responses " + over, b.counts(rs...)
	}
	return "canary and stable latency buckets " + over, b.buckets(rs...)
}

// pick keeps the rows of m's namespace and Deployments.
func (m member) pick(vec model.Vector) model.Vector {
	var out model.Vector
	for _, smp := range vec {
		if string(smp.Metric["namespace"]) != m.namespace {
			continue
		}
		if d := string(smp.Metric["deployment"]); d == m.canary || d == m.stable {
			out = append(out, smp)
		}
	}
	return out
}
