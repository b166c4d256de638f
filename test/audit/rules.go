package audit

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// Sample is one look at the cluster.
type Sample struct {
	At time.Time
	// Split is false when the app has no TrafficSplit.
	Split bool
	// Weights are the split's backend weights in milli, by backend Service.
	Weights map[string]int64
	// Empty names the backends found without a ready endpoint both before
	// and after the split was read.
	Empty map[string]bool
	// Status is the Deployment's status annotation; nil when the Deployment
	// is gone or carries none.
	Status *rollout.Status
}

// Violation is one breach of an invariant.
type Violation struct {
	At     time.Time
	Rule   string // void, sum, early-step, step-repeated, step-skipped, failed-promoted
	Detail string
}

func (v Violation) String() string {
	return v.At.Format("15:04:05.000") + " " + v.Rule + ": " + v.Detail
}

// WeightChange is the canary weight (milli; -1: no split) first seen at At.
// The change itself happened after Before, the time of the sample before,
// which still showed the previous weight (zero for the first sample).
type WeightChange struct {
	At     time.Time
	Before time.Time
	Canary int
}

// Rules applies the invariants to a sequence of samples. The zero value is
// not usable: build it with NewRules. It is safe for concurrent use.
type Rules struct {
	canary   string
	total    int64
	interval time.Duration
	lag      time.Duration
	// watched: the weight timeline comes from a watch of the split
	// (Weight), not from the samples, which can miss a weight that lasted
	// less than the sampling period.
	watched bool

	mu         sync.Mutex
	violations []Violation
	dropped    int
	changes    []WeightChange
	lastAt     time.Time
	// The rollout being walked (revision@startedAt) and where it was.
	rolloutKey string
	step       int
	stepAt     time.Time
	// Revisions seen failed and not released since by a command.
	failed     map[string]bool
	prevFailed string
	accused    map[string]bool // failed-promoted is reported once per revision
}

// maxViolations bounds memory when something goes badly wrong; the count
// past it is still reported.
const maxViolations = 200

// NewRules checks an app whose canary backend Service is canary, whose split
// weights sum to total (milli: 1000) and whose steps last at least interval.
//
// lag is how much shorter than the interval a step may look in the split.
// canaryd starts a step's clock when it first sees the step's weight in
// place (after the split write), so as traffic sees it a step lasts at least
// the interval and lag only absorbs timer granularity. The status rule
// checks canaryd's own step times exactly.
func NewRules(canary string, total int64, interval, lag time.Duration) *Rules {
	return &Rules{canary: canary, total: total, interval: interval, lag: lag,
		failed: map[string]bool{}, accused: map[string]bool{}}
}

func (r *Rules) violate(at time.Time, rule, format string, args ...any) {
	if len(r.violations) >= maxViolations {
		r.dropped++
		return
	}
	r.violations = append(r.violations, Violation{At: at, Rule: rule, Detail: fmt.Sprintf(format, args...)})
}

// Observe applies every rule to one sample. Samples must come in time order.
func (r *Rules) Observe(s Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// gap is how long the auditor could not see: a jump in status.step over
	// a gap longer than an interval may be honest.
	var gap time.Duration
	before := r.lastAt
	if !before.IsZero() {
		gap = s.At.Sub(before)
	}
	r.lastAt = s.At
	canary := -1
	if s.Split {
		r.routing(s)
		canary = int(s.Weights[r.canary])
	}
	if !r.watched {
		r.weight(s.At, before, canary)
	}
	if s.Status != nil {
		r.steps(s.At, *s.Status, gap)
		r.promotions(s.At, *s.Status)
	}
}

// WatchWeights makes Weight, fed by a watch of the split, the only source
// of the canary weight timeline; samples then judge routing and status only.
func (r *Rules) WatchWeights() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watched = true
}

// Weight records the canary weight (milli; -1: no split) that a watch of the
// split delivered at. A watch sees every stored version of the split in
// order, so each change is known to the watch's delivery delay rather than
// to the sampling period: the change's Before is its own time.
func (r *Rules) Weight(at time.Time, canary int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.weight(at, at, canary)
}

// routing: the weights sum to the total, and no weight lands on a backend
// without a ready endpoint.
func (r *Rules) routing(s Sample) {
	var sum int64
	names := make([]string, 0, len(s.Weights))
	for b, w := range s.Weights {
		sum += w
		names = append(names, b)
	}
	sort.Strings(names)
	if sum != r.total {
		r.violate(s.At, "sum", "weights sum to %dm, not %dm: %v", sum, r.total, s.Weights)
	}
	for _, b := range names {
		if w := s.Weights[b]; w > 0 && s.Empty[b] {
			r.violate(s.At, "void", "%s has weight %dm and no ready endpoint", b, w)
		}
	}
}

// weight records the canary weight timeline and judges each change: a step
// up between two analysis steps must come no sooner than the interval (less
// lag) after the previous change, and the weight never falls except back to
// 0 (a rollback or the end of a promotion), to no split at all, or from all
// traffic on the canary.
//
// The previous weight was in place at most from just after its Before to
// this sample (at): that upper bound on how long it lasted is what is
// judged, so a slow sample can hide a short step but never invent one.
func (r *Rules) weight(at, before time.Time, canary int) {
	n := len(r.changes)
	if n > 0 && r.changes[n-1].Canary == canary {
		return
	}
	r.changes = append(r.changes, WeightChange{At: at, Before: before, Canary: canary})
	if n == 0 {
		return
	}
	prev := r.changes[n-1]
	switch {
	case prev.Canary > 0 && canary > prev.Canary && int64(canary) < r.total && !prev.Before.IsZero():
		if d := at.Sub(prev.Before); d < r.interval-r.lag {
			r.violate(at, "early-step", "canary weight %dm → %dm at most %s after the previous change (interval %s)",
				prev.Canary, canary, d.Round(time.Millisecond), r.interval)
		}
	case canary > 0 && canary < prev.Canary && int64(prev.Canary) < r.total:
		// From all traffic on the canary (guardCapacity's answer to a
		// stable without endpoints) back to a step's weight is traffic
		// returning to stable, not a step walked again: status.step,
		// judged in steps, says whether a step repeated.
		r.violate(at, "step-repeated", "canary weight fell from %dm to %dm without going back to stable first", prev.Canary, canary)
	}
}

func walking(p rollout.Phase) bool {
	return p == rollout.PhaseProgressing || p == rollout.PhaseHeld || p == rollout.PhaseWaitingPromotion
}

// steps follows status.step within one rollout (one revision and start
// time): it goes 1, 2, 3 …, each no sooner than the interval after the last.
func (r *Rules) steps(at time.Time, st rollout.Status, gap time.Duration) {
	if !walking(st.Phase) || st.StartedAt == nil {
		return
	}
	key := st.Revision + "@" + st.StartedAt.UTC().Format(time.RFC3339Nano)
	var stepAt time.Time
	if st.StepStartedAt != nil {
		stepAt = *st.StepStartedAt
	}
	if key != r.rolloutKey {
		r.rolloutKey, r.step, r.stepAt = key, st.Step, stepAt
		return
	}
	switch {
	case st.Step < r.step:
		r.violate(at, "step-repeated", "revision %s went back from step %d to step %d", st.Revision, r.step, st.Step)
	case st.Step > r.step+1 && gap <= r.interval:
		r.violate(at, "step-skipped", "revision %s jumped from step %d to step %d", st.Revision, r.step, st.Step)
	case st.Step == r.step+1 && r.step >= 1 && !r.stepAt.IsZero() && !stepAt.IsZero():
		// The status times are canaryd's own, so no sampling slack applies.
		if d := stepAt.Sub(r.stepAt); d < r.interval {
			r.violate(at, "early-step", "revision %s: step %d began %s after step %d (interval %s)",
				st.Revision, st.Step, d.Round(time.Millisecond), r.step, r.interval)
		}
	}
	r.step, r.stepAt = st.Step, stepAt
}

// promotions: a revision seen failed is never promoted until a retry,
// promote or skip-analysis command released it. Those commands are the only
// way status.failedRevision is cleared, and their outcome (in lastCommand)
// names the revision, so the release is seen as that change.
func (r *Rules) promotions(at time.Time, st rollout.Status) {
	if r.prevFailed != "" && st.FailedRevision != r.prevFailed {
		cmd := st.LastCommand
		released := strings.Contains(cmd, r.prevFailed) &&
			(strings.HasPrefix(cmd, string(rollout.CmdRetry)+":") || strings.HasPrefix(cmd, string(rollout.CmdPromote)+":") ||
				strings.HasPrefix(cmd, string(rollout.CmdSkipAnalysis)+":"))
		if released {
			delete(r.failed, r.prevFailed)
		}
	}
	if st.FailedRevision != "" {
		r.failed[st.FailedRevision] = true
	}
	r.prevFailed = st.FailedRevision
	promoting := st.Phase == rollout.PhasePromoting || st.Phase == rollout.PhaseSucceeded
	if promoting && r.failed[st.Revision] && !r.accused[st.Revision] {
		r.accused[st.Revision] = true
		r.violate(at, "failed-promoted", "revision %s failed and is %s without a retry or promote", st.Revision, st.Phase)
	}
}

// Violations returns every breach seen so far, in order.
func (r *Rules) Violations() []Violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Violation(nil), r.violations...)
	if r.dropped > 0 {
		out = append(out, Violation{At: r.lastAt, Rule: "more", Detail: fmt.Sprintf("%d further violations not kept", r.dropped)})
	}
	return out
}

// Changes returns the canary weight timeline.
func (r *Rules) Changes() []WeightChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WeightChange(nil), r.changes...)
}
