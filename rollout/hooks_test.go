package rollout

import (
	"strings"
	"testing"
	"time"
)

func TestTheWebhooks(t *testing.T) {
	hooks := map[string]string{
		KeyPreRollout:       "https://gate.example/pre",
		KeyConfirmPromotion: "https://gate.example/confirm",
		KeyPostRollout:      "https://chat.example/post",
	}
	t.Run("pre-rollout holds the canary without traffic until it says yes", func(t *testing.T) {
		w := adopted(t, hooks)
		yes := false
		w.hook = func(c HookCall) *HookResult {
			if c.Hook == HookPreRollout && !yes {
				return &HookResult{Hook: c.Hook, Message: "HTTP 503: change freeze"}
			}
			return &HookResult{Hook: c.Hook, OK: true}
		}
		w.bump("r2")
		w.stays(time.Second, 30*time.Second, func(s Status) bool { return s.Step == 0 && *w.weight == 0 })
		if !w.hasEvent("HookRefused") || !strings.Contains(w.status().Message, "change freeze") {
			t.Fatalf("no refusal reported: %v / %q", w.reasons(), w.status().Message)
		}
		yes = true
		w.run(time.Second, 5*time.Second, func(s Status) bool { return s.Step == 1 })
		if got := w.status().PreRollout; got != "r2" {
			t.Errorf("preRollout %q", got)
		}
	})
	t.Run("a pre-rollout that never says yes meets the progress deadline", func(t *testing.T) {
		w := adopted(t, mergeAnn(hooks, KeyOnInconclusive, "rollback"))
		w.hook = func(c HookCall) *HookResult { return &HookResult{Hook: c.Hook, Message: "connection refused"} }
		w.bump("r2")
		w.run(time.Second, 2*time.Minute, phaseIs(PhaseFailed))
	})
	t.Run("confirm-promotion gates the promotion; post-rollout is told once", func(t *testing.T) {
		w := adopted(t, hooks)
		confirm := false
		w.hook = func(c HookCall) *HookResult {
			return &HookResult{Hook: c.Hook, OK: c.Hook != HookConfirmPromotion || confirm}
		}
		w.bump("r2")
		w.run(time.Second, time.Minute, phaseIs(PhaseWaitingPromotion))
		w.stays(time.Second, 30*time.Second, phaseIs(PhaseWaitingPromotion))
		confirm = true
		w.run(time.Second, 30*time.Second, phaseIs(PhaseSucceeded))
		w.stays(time.Second, 30*time.Second, phaseIs(PhaseSucceeded))
		if n := w.callsOf(HookPostRollout); n != 1 {
			t.Errorf("post-rollout called %d times, want 1", n)
		}
		if w.status().PostRollout != "r2/Succeeded" {
			t.Errorf("postRollout %q", w.status().PostRollout)
		}
	})
	t.Run("a bad URL is a configuration error naming the key", func(t *testing.T) {
		_, err := ParseSpec(map[string]string{KeyPreRollout: "ftp://x"}, DefaultSpec())
		if err == nil || !strings.Contains(err.Error(), KeyPreRollout) || !strings.Contains(err.Error(), "http://") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestAClosingWindowHoldsARolloutWhenAskedTo(t *testing.T) {
	// The window is 12:00–12:01 on the world's day; the rollout starts inside it.
	w := adopted(t, map[string]string{KeyWindow: "0 12 * * * 1m", KeyOutsideWindow: "hold"})
	w.bump("r2")
	w.run(time.Second, 15*time.Second, func(s Status) bool { return s.Step == 1 })
	w.now = time.Date(2026, 11, 25, 12, 1, 0, 0, time.UTC)
	w.stays(time.Second, time.Minute, func(s Status) bool { return s.Step == 1 && strings.Contains(s.Message, "outside the rollout window") })
	w.now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	w.run(time.Second, 30*time.Second, func(s Status) bool { return s.Step == 2 })
}

func mergeAnn(a map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
