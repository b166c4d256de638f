package rollout

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// Phase is where a Deployment is in its rollout lifecycle (DESIGN.md).
type Phase string

const (
	PhaseIdle             Phase = "Idle"
	PhaseWaiting          Phase = "Waiting" // a new revision waits for its rollout window
	PhaseProgressing      Phase = "Progressing"
	PhaseHeld             Phase = "Held" // analysis inconclusive or erroring; the step holds
	PhaseWaitingPromotion Phase = "WaitingPromotion"
	PhasePromoting        Phase = "Promoting"
	PhaseSucceeded        Phase = "Succeeded"
	PhaseRollingBack      Phase = "RollingBack"
	PhaseFailed           Phase = "Failed"
)

// Promotion stages, in order. Each waits for the cluster to show that the
// previous one took effect, so that no moment has weight on a backend
// without ready pods.
const (
	StageScaleCanary  = "ScaleCanary"  // canary scaled to the stable replica count
	StageShiftCanary  = "ShiftCanary"  // all traffic on the canary
	StageRollStable   = "RollStable"   // the user's Deployment rolls to the new revision
	StageReturnStable = "ReturnStable" // foo-stable follows the new ReplicaSet; traffic back on stable
)

// Status is the canaryd.io/status annotation: compact JSON, written only by
// canaryd, the single source of truth that makes restarts safe.
type Status struct {
	Phase          Phase  `json:"phase"`
	Revision       string `json:"revision,omitempty"`       // the revision being (or last) rolled out
	StableRevision string `json:"stableRevision,omitempty"` // the revision foo-stable serves
	StableHash     string `json:"stableHash,omitempty"`     // pod-template-hash of the stable ReplicaSet
	FailedRevision string `json:"failedRevision,omitempty"`

	Step int `json:"step,omitempty"` // steps applied, 0..len(steps)
	// Steps and Interval are the configuration the rollout under way walks
	// (defaults included), for tools that show progress; absent at rest.
	Steps         []int      `json:"steps,omitempty"`
	Interval      string     `json:"interval,omitempty"`
	Weight        int        `json:"weight,omitempty"` // canary weight, milli
	Stage         string     `json:"stage,omitempty"`  // promotion stage
	StartedAt     *time.Time `json:"startedAt,omitempty"`
	StepStartedAt *time.Time `json:"stepStartedAt,omitempty"`
	// Applied: the step's weight has been seen in place; StepStartedAt is
	// then the time it was first seen, so write latency never shortens a step.
	Applied   bool       `json:"applied,omitempty"`
	HeldSince *time.Time `json:"heldSince,omitempty"`

	Failures     int `json:"failures,omitempty"`
	Inconclusive int `json:"inconclusive,omitempty"`

	Paused       bool   `json:"paused,omitempty"`       // a person paused the rollout
	SkipAnalysis bool   `json:"skipAnalysis,omitempty"` // promote the next revision without analysis
	LastCommand  string `json:"lastCommand,omitempty"`  // "<command>: <outcome>"

	PreRollout  string `json:"preRollout,omitempty"`  // revision the pre-rollout webhook approved
	PostRollout string `json:"postRollout,omitempty"` // "<revision>/<phase>" the post-rollout webhook was told of

	LastCheck *Check `json:"lastCheck,omitempty"`
	Message   string `json:"message,omitempty"`
}

// Check is the record of the analysis that last decided something.
type Check struct {
	Time        time.Time        `json:"time"`
	Verdict     analysis.Verdict `json:"verdict"`
	Requests    *float64         `json:"requests,omitempty"`
	SuccessRate *float64         `json:"successRate,omitempty"`
	P99Ms       *float64         `json:"p99Ms,omitempty"`
	Reason      string           `json:"reason,omitempty"`
}

// Announced is the weight a Progressing or Held status announces for its
// next step: the rollout's next step once its current one is in place (the
// status records the steps it walks). A check that passes at the due time
// moves the canary there, and because the status said so before, the route
// may change before the status records the step (Decision.RouteFirst).
func (s Status) Announced() (int, bool) {
	if (s.Phase != PhaseProgressing && s.Phase != PhaseHeld) || !s.Applied ||
		s.StepStartedAt == nil || s.Step < 1 || s.Step >= len(s.Steps) {
		return 0, false
	}
	return s.Steps[s.Step], true
}

// AwaitsApplied: s walks a step whose weight, once a route write carrying
// weight has succeeded, is in place but not yet recorded so (MarkApplied).
func (s Status) AwaitsApplied(weight int) bool {
	return s.Phase == PhaseProgressing && s.Step >= 1 && !s.Applied && s.Weight == weight
}

// MarkApplied records the step's weight as in place since at: the
// controller's clock when the route write that carried it succeeded.
func (s *Status) MarkApplied(at time.Time) {
	s.StepStartedAt, s.Applied = stamp(at), true
}

// ParseStatus reads the status annotation. An empty value is a Deployment
// canaryd has not adopted yet.
func ParseStatus(v string) (Status, error) {
	var s Status
	if v == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return Status{}, fmt.Errorf("%s: not canaryd's JSON: %w", AnnotationStatus, err)
	}
	switch s.Phase {
	case "", PhaseIdle, PhaseWaiting, PhaseProgressing, PhaseHeld, PhaseWaitingPromotion, PhasePromoting,
		PhaseSucceeded, PhaseRollingBack, PhaseFailed:
	default:
		return Status{}, fmt.Errorf("%s: phase %q is not one of canaryd's", AnnotationStatus, s.Phase)
	}
	return s, nil
}

// fillTimes dates what a status canaryd did not write itself (edited by
// hand, or by an older canaryd) lacks but its phase counts from: from now,
// which can delay a step or a deadline, never bring one forward.
func (s *Status) fillTimes(now time.Time) {
	switch s.Phase {
	case PhaseProgressing, PhaseHeld, PhaseWaitingPromotion, PhasePromoting, PhaseRollingBack:
		if s.StartedAt == nil {
			s.StartedAt = stamp(now)
		}
		if s.StepStartedAt == nil {
			s.StepStartedAt = stamp(now)
		}
	}
	if s.Phase == PhaseHeld && s.HeldSince == nil {
		s.HeldSince = stamp(now)
	}
}

// Encode renders the status annotation. Equal statuses encode equally, which
// is what lets the controller skip writes that would change nothing.
func (s Status) Encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		// Every field is a plain value with NaN filtered out by number():
		// marshalling cannot fail.
		panic(fmt.Sprintf("rollout: encoding status: %v", err))
	}
	return string(b)
}

func newCheck(now time.Time, r *analysis.Result) *Check {
	return &Check{
		Time:        now,
		Verdict:     r.Verdict,
		Requests:    number(r.Canary.Requests),
		SuccessRate: number(r.Canary.SuccessRate),
		P99Ms:       number(r.Canary.LatencyP99Ms),
		Reason:      truncate(r.Reason, 240),
	}
}

// number drops what JSON cannot hold (NaN, ±Inf: "no data") and rounds to
// three decimals to keep the annotation compact.
func number(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	f = math.Round(f*1000) / 1000
	return &f
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// stamp returns a time for the status: UTC, rounded up to the millisecond so
// that a recorded start is never earlier than the real one (a step is never
// applied sooner than interval after the previous, even by a rounding).
func stamp(t time.Time) *time.Time {
	r := t.UTC().Truncate(time.Millisecond)
	if r.Before(t) {
		r = r.Add(time.Millisecond)
	}
	return &r
}
