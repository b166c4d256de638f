package rollout

import (
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// Observed is everything Decide may know: a snapshot of the cluster for one
// opted-in Deployment "foo", taken by the kube package, plus the time.
type Observed struct {
	Now      time.Time
	Defaults Spec // cluster-wide defaults (flags); annotations override them

	Namespace   string
	Name        string
	Annotations map[string]string // foo's annotations: configuration, commands, status
	Enabled     bool              // foo exists, carries the opt-in label and is not being deleted
	Paused      bool              // foo's spec.paused
	Replicas    int32             // foo's spec.replicas (an HPA may move it)
	Revision    string            // canaryd's hash of foo's pod template
	Rollout     DeploymentRollout // foo's own rollout progress
	ReplicaSets []ReplicaSet      // foo's ReplicaSets

	Canary *Canary // foo-canary; nil when absent

	// Ready endpoints behind canaryd's Services, from their EndpointSlices.
	StableEndpoints int
	CanaryEndpoints int
	// StableServiceHash is the pod-template-hash foo-stable selects today;
	// empty when foo-stable does not exist.
	StableServiceHash string

	// Weight is the canary weight (milli) the split carries now; nil when
	// there is no split object.
	Weight *int
	// RouteBlocked says why the route cannot carry weights now (a
	// ServiceProfile overriding it, a route its controller did not accept);
	// empty when nothing blocks it. Decide then moves no weight (route.go).
	RouteBlocked string

	// CanaryScraped is how many of foo-canary's pods Prometheus scraped at
	// its last scrape, when PlanScrape asked; nil when it did not ask.
	CanaryScraped *int
	// ScrapeError says why that could not be learnt (Prometheus down).
	ScrapeError string

	// Check is the verdict of the analysis PlanCheck asked for; nil when no
	// check was due.
	Check *analysis.Result
	// Hook is the answer of the webhook PlanHook asked for; nil when none
	// was due.
	Hook *HookResult
	// LastHook is when the controller last called a gating webhook for foo
	// (memory, like LastProbe: it only paces the calls).
	LastHook time.Time
	// LastProbe is when the controller last ran an analysis for foo. It only
	// paces probes between step decisions (zero after a restart: probe now).
	LastProbe time.Time
	// AnalysisPeriod is how often to probe between step decisions, so that a
	// conclusive failure stops the canary without waiting for the step's end.
	AnalysisPeriod time.Duration
	// ScrapedAt is when Prometheus scraped one of foo-canary's pods, as the
	// scrape probe last learnt (memory, like LastProbe: it only places the
	// probes; zero when unknown). Prometheus scrapes a target at a fixed
	// phase of ScrapeInterval, so with both the probes between step
	// decisions run just after the canary's scrapes, when its newest
	// requests have just become visible, instead of up to an interval later.
	ScrapedAt      time.Time
	ScrapeInterval time.Duration
}

// probeMargin is how long after a scrape a probe runs: the scrape's samples
// carry its start time and are queryable once it is appended.
func probeMargin(interval time.Duration) time.Duration {
	return min(interval/4, 500*time.Millisecond)
}

// nextProbe is when the next probe between step decisions is due after one
// at last: a period later, or, with the canary's scrape phase known, just
// after the scrape nearest to that (half an interval either way), and never
// at last again. Once on the phase, probes stay on it however late each ran
// by a little; the first one aligned comes at most half an interval early.
func nextProbe(o Observed, last time.Time, period time.Duration) time.Time {
	at := last.Add(period)
	iv := o.ScrapeInterval
	if o.ScrapedAt.IsZero() || iv <= 0 || last.IsZero() {
		return at
	}
	t := onPhase(o.ScrapedAt.Add(probeMargin(iv)), iv, at.Add(-iv/2))
	if !t.After(last) {
		t = onPhase(t, iv, last.Add(1))
	}
	return t
}

// onPhase is the first time base + k·iv (k any integer) at or after x.
func onPhase(base time.Time, iv time.Duration, x time.Time) time.Time {
	k := x.Sub(base) / iv
	t := base.Add(k * iv)
	for t.Before(x) {
		t = t.Add(iv)
	}
	for !t.Add(-iv).Before(x) {
		t = t.Add(-iv)
	}
	return t
}

// DeploymentRollout is the part of a Deployment's status that says whether
// its own rollout has finished.
type DeploymentRollout struct {
	ObservedCurrent bool  // status.observedGeneration ≥ metadata.generation
	Updated         int32 // status.updatedReplicas
	Available       int32 // status.availableReplicas
	Total           int32 // status.replicas (all pods, old and new)
}

// ReplicaSet is one of foo's ReplicaSets.
type ReplicaSet struct {
	Hash      string // its pod-template-hash label
	Revision  string // canaryd's hash of its template (without pod-template-hash)
	Replicas  int32
	Available int32
}

// Canary is the observed foo-canary Deployment.
type Canary struct {
	Revision string // its canaryd.io/revision annotation
	Replicas int32  // spec.replicas
	Ready    int32  // status.readyReplicas of its current template
	Current  bool   // its controller has seen its latest spec
	// Hash is the pod-template-hash of its ReplicaSet for its current
	// template: its pods' label, which tells them from an older canary's.
	Hash string
}

// Desired is the state canaryd wants every object it owns to be in.
type Desired struct {
	Paused         bool   // foo's spec.paused
	Weight         int    // canary weight, milli
	StableHash     string // pod-template-hash foo-stable selects
	CanaryReplicas int32
	// CanaryTemplate: foo-canary must carry foo's current template (create it
	// if absent). False leaves its template alone: it is never changed while
	// the canary carries traffic.
	CanaryTemplate bool
	// SkipSplit: do not create the split yet. A new split would send its
	// weight to a Service whose endpoints are not there yet (just created);
	// until they are, the apex keeps balancing over the app's pods itself.
	SkipSplit bool

	// Offboarding, in order, each once the cluster shows the previous done:
	// weight to 0; then DeleteSplit; then DeleteRest (Services, foo-canary,
	// status annotation) and unpause foo.
	Offboard    bool
	DeleteSplit bool
	DeleteRest  bool
}

// Event is a Kubernetes Event to raise on foo, and the matching log line.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Decision is what Decide wants done.
type Decision struct {
	Status Status
	// Desired is nil when no object but foo's status may be written
	// (invalid configuration, an unreadable status, foo's own rollout
	// still in progress before adoption).
	Desired *Desired
	Events  []Event
	// RemoveAnnotations are the one-shot commands carried out or refused.
	RemoveAnnotations []string
	// RequeueAfter is when to look again if nothing changes before; 0: only
	// on the next change.
	RequeueAfter time.Duration
	// RouteFirst: this decision takes the step the stored status announced
	// (Status.Announced), so its intent is written already. The controller
	// may write the route before the status, and then record the step as
	// applied from the moment the route write succeeded (Status.MarkApplied):
	// one write on the step's critical path and two per step in all, instead
	// of the status, the route and a second status write. A controller that
	// cannot tell when a route write takes effect ignores it.
	RouteFirst bool
}
