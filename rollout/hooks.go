package rollout

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Hook names a lifecycle webhook, configured by the annotation
// canaryd.io/<hook>: <URL>. canaryd POSTs a HookPayload to it; any 2xx
// answer is a yes.
//
//	pre-rollout        must say yes before the canary takes any traffic;
//	                   a no (or no answer) holds step 0 until it says yes or
//	                   progress-deadline passes (then: on-inconclusive).
//	confirm-promotion  must say yes before a canary that passed every step is
//	                   promoted; until then the rollout waits (WaitingPromotion).
//	post-rollout       told once when a rollout ends (Succeeded or Failed);
//	                   informational, its answer changes nothing.
type Hook string

const (
	HookPreRollout       Hook = "pre-rollout"
	HookConfirmPromotion Hook = "confirm-promotion"
	HookPostRollout      Hook = "post-rollout"
)

// HookCall is a webhook the controller is to call for this snapshot.
type HookCall struct {
	Hook    Hook
	URL     string
	Payload HookPayload
}

// HookPayload is the JSON body of a webhook call.
type HookPayload struct {
	Hook           Hook   `json:"hook"`
	Namespace      string `json:"namespace"`
	Name           string `json:"name"`
	Phase          Phase  `json:"phase"`
	Revision       string `json:"revision"`
	StableRevision string `json:"stableRevision"`
	Step           int    `json:"step"`
	Weight         int    `json:"weight"`
	Message        string `json:"message,omitempty"`
}

// HookResult is what a webhook answered.
type HookResult struct {
	Hook    Hook
	OK      bool
	Message string // why not, for events: "HTTP 503: maintenance"
}

func validHookURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && len(v) <= 2048 && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// PlanHook says whether a webhook call is due for this snapshot. Gates are
// asked again every AnalysisPeriod while they hold a rollout; the
// post-rollout notice is sent once per finished rollout.
func PlanHook(o Observed) (HookCall, bool) {
	if !o.Enabled {
		return HookCall{}, false
	}
	st, err := ParseStatus(o.Annotations[AnnotationStatus])
	if err != nil {
		return HookCall{}, false
	}
	spec, err := ParseSpec(o.Annotations, o.Defaults)
	if err != nil || len(spec.Hooks) == 0 {
		return HookCall{}, false
	}
	var hook Hook
	switch {
	case st.Phase == PhaseProgressing && st.Step == 0 && st.PreRollout != st.Revision && o.Revision == st.Revision &&
		canaryReady(o, st, need(spec.Steps[0], o.Replicas)):
		hook = HookPreRollout
	case st.Phase == PhaseWaitingPromotion && o.Revision == st.Revision && !spec.ManualPromotion:
		hook = HookConfirmPromotion
	case (st.Phase == PhaseSucceeded || st.Phase == PhaseFailed) && st.Revision != "" && st.PostRollout != postKey(st):
		hook = HookPostRollout
	default:
		return HookCall{}, false
	}
	u := spec.Hooks[hook]
	if u == "" {
		return HookCall{}, false
	}
	if hook != HookPostRollout && o.Now.Sub(o.LastHook) < periodOf(o, spec) {
		return HookCall{}, false
	}
	return HookCall{Hook: hook, URL: u, Payload: HookPayload{
		Hook: hook, Namespace: o.Namespace, Name: o.Name, Phase: st.Phase, Revision: st.Revision,
		StableRevision: st.StableRevision, Step: st.Step, Weight: st.Weight, Message: st.Message,
	}}, true
}

func postKey(st Status) string { return st.Revision + "/" + string(st.Phase) }

func periodOf(o Observed, spec Spec) time.Duration {
	if o.AnalysisPeriod > 0 && o.AnalysisPeriod < spec.Interval {
		return o.AnalysisPeriod
	}
	return spec.Interval
}

// canaryReady: foo-canary runs the rollout's revision with want ready pods
// and at least one ready endpoint behind foo-canary.
func canaryReady(o Observed, st Status, want int32) bool {
	c := o.Canary
	return c != nil && c.Revision == st.Revision && c.Current && c.Ready >= want && o.CanaryEndpoints > 0
}

// gate reports whether a gating hook lets the rollout go on. Without the
// hook configured it always does. A refusal is raised as a Warning once per
// distinct answer.
func (d *decider) gate(h Hook) bool {
	if d.spec.Hooks[h] == "" {
		return true
	}
	r := d.o.Hook
	refused := fmt.Sprintf("the %s webhook says no: ", h)
	if r == nil || r.Hook != h {
		if strings.HasPrefix(d.prev.Message, refused) {
			d.st.Message = d.prev.Message // still the last answer
			return false
		}
		if d.st.Message == "" {
			d.st.Message = fmt.Sprintf("waiting for the %s webhook to say yes", h)
		}
		return false
	}
	if r.OK {
		d.event("HookPassed", "%s webhook said yes", h)
		return true
	}
	msg := refused + truncate(r.Message, 200)
	if d.prev.Message != msg {
		d.warn("HookRefused", "%s", msg)
	}
	d.st.Message = msg
	return false
}

// recordPostRollout notes the post-rollout notice as sent (whatever the
// answer: it is informational).
func (d *decider) recordPostRollout() {
	r := d.o.Hook
	if r == nil || r.Hook != HookPostRollout || d.st.PostRollout == postKey(d.st) {
		return
	}
	d.st.PostRollout = postKey(d.st)
	if !r.OK {
		d.warn("HookFailed", "post-rollout webhook: %s", truncate(r.Message, 200))
	}
}
