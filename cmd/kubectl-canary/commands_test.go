package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// The CLI refuses a command at once when canaryd would refuse it: it must
// never set an annotation canaryd refuses (the person would see success,
// then a CommandRefused event), and it may refuse more only where canaryd's
// acceptance changes nothing (pausing what is paused). This test pins
// refusal to rollout.Decide itself, phase by phase, so the two cannot drift.
func TestRefusalAgreesWithCanaryd(t *testing.T) {
	const cur, stable, other = "r2", "r1", "r3"
	type scenario struct {
		name string
		st   rollout.Status
		tmpl string // the Deployment's template revision now
	}
	at := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	walk := func(p rollout.Phase) rollout.Status {
		return rollout.Status{Phase: p, Revision: cur, StableRevision: stable, StableHash: "h1", Step: 1, Weight: 100,
			StartedAt: &at, StepStartedAt: &at}
	}
	var scenarios []scenario
	for _, p := range []rollout.Phase{rollout.PhaseProgressing, rollout.PhaseHeld, rollout.PhaseWaitingPromotion} {
		scenarios = append(scenarios, scenario{"walking " + string(p), walk(p), cur})
	}
	for _, stage := range []string{rollout.StageScaleCanary, rollout.StageShiftCanary, rollout.StageRollStable, rollout.StageReturnStable} {
		st := walk(rollout.PhasePromoting)
		st.Stage = stage
		scenarios = append(scenarios, scenario{"promoting " + stage, st, cur})
	}
	idle := rollout.Status{Phase: rollout.PhaseIdle, Revision: stable, StableRevision: stable, StableHash: "h1"}
	succeeded := rollout.Status{Phase: rollout.PhaseSucceeded, Revision: stable, StableRevision: stable, StableHash: "h1", Step: 3}
	failed := rollout.Status{Phase: rollout.PhaseFailed, Revision: cur, StableRevision: stable, StableHash: "h1", FailedRevision: cur}
	rollingBack := walk(rollout.PhaseRollingBack)
	rollingBack.Weight = 0
	waiting := rollout.Status{Phase: rollout.PhaseWaiting, Revision: cur, StableRevision: stable, StableHash: "h1"}
	scenarios = append(scenarios,
		scenario{"idle", idle, stable},
		scenario{"succeeded", succeeded, stable},
		scenario{"failed, revision pending", failed, cur},
		scenario{"rolling back", rollingBack, cur},
		scenario{"waiting for a window", waiting, cur},
	)
	// Each also paused, and with skip-analysis already set.
	for _, s := range append([]scenario(nil), scenarios...) {
		p := s
		p.name, p.st.Paused = s.name+", paused", true
		k := s
		k.name, k.st.SkipAnalysis = s.name+", skip set", true
		scenarios = append(scenarios, p, k)
	}
	_ = other
	for _, s := range scenarios {
		for _, cmd := range allCommands {
			t.Run(fmt.Sprintf("%s/%s", s.name, cmd), func(t *testing.T) {
				v := view{Enabled: true, Adopted: true, Status: s.st, Template: s.tmpl, Spec: rollout.DefaultSpec(), Name: "web"}
				cli := refusal(v, cmd)
				accepted, outcome := canarydAccepts(t, s.st, s.tmpl, cmd)
				switch {
				case cli == "" && !accepted:
					t.Errorf("the CLI sends %s, which canaryd refuses: %s", cmd, outcome)
				case cli != "" && accepted && !noOp(s.st, cmd):
					t.Errorf("the CLI refuses %s (%s), which canaryd carries out: %s", cmd, cli, outcome)
				}
			})
		}
	}
}

// noOp: canaryd accepts these but they change nothing, so refusing them
// tells the person something true.
func noOp(st rollout.Status, cmd rollout.Command) bool {
	switch cmd {
	case rollout.CmdPause:
		return st.Paused
	case rollout.CmdResume:
		return !st.Paused
	case rollout.CmdSkipAnalysis:
		return st.SkipAnalysis
	}
	return false
}

// canarydAccepts runs rollout.Decide with the command set and reads its verdict from the event.
func canarydAccepts(t *testing.T, st rollout.Status, tmpl string, cmd rollout.Command) (bool, string) {
	t.Helper()
	o := rollout.Observed{
		Now: time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC), Defaults: rollout.DefaultSpec(), Namespace: "shop", Name: "web",
		Annotations: map[string]string{rollout.AnnotationStatus: st.Encode(), cmd.Key(): "x"},
		Enabled:     true, Paused: true, Replicas: 2, Revision: tmpl,
		Rollout:     rollout.DeploymentRollout{ObservedCurrent: true, Updated: 0, Available: 2, Total: 2},
		ReplicaSets: []rollout.ReplicaSet{{Hash: "h1", Revision: "r1", Replicas: 2, Available: 2}},
	}
	dec := rollout.Decide(o)
	for _, e := range dec.Events {
		if !strings.HasPrefix(e.Message, cmd.Key()+":") {
			continue
		}
		switch e.Reason {
		case "Command":
			return true, e.Message
		case "CommandRefused":
			return false, e.Message
		}
	}
	t.Fatalf("Decide raised no Command or CommandRefused event for %s: %+v", cmd, dec.Events)
	return false, ""
}

func TestRefusalNamesWhatIsWrong(t *testing.T) {
	rev := "r2"
	base := view{Enabled: true, Adopted: true, Template: rev, Name: "web"}
	cases := []struct {
		name string
		v    func(view) view
		cmd  rollout.Command
		want string
	}{
		{"not opted in", func(v view) view { v.Enabled = false; return v }, rollout.CmdPromote, "no canaryd.io/enabled=true label"},
		{"not adopted", func(v view) view { v.Adopted = false; return v }, rollout.CmdAbort, "not adopted it yet"},
		{"already pending", func(v view) view {
			v.Status.Phase, v.Pending = rollout.PhaseProgressing, []rollout.Command{rollout.CmdPromote}
			return v
		}, rollout.CmdPromote, "already set and waits for canaryd"},
		{"retry when idle", func(v view) view { v.Status.Phase = rollout.PhaseIdle; return v }, rollout.CmdRetry, "not Failed"},
		{"retry of a revision no longer pending", func(v view) view {
			v.Status.Phase, v.Status.FailedRevision = rollout.PhaseFailed, "r1"
			return v
		}, rollout.CmdRetry, "no longer the Deployment's template"},
		{"abort after the stable rolls", func(v view) view {
			v.Status.Phase, v.Status.Stage = rollout.PhasePromoting, rollout.StageRollStable
			return v
		}, rollout.CmdAbort, "too late to abort"},
		{"promote when idle", func(v view) view { v.Status.Phase = rollout.PhaseSucceeded; return v }, rollout.CmdPromote, "no rollout in progress"},
		{"resume when running", func(v view) view { v.Status.Phase = rollout.PhaseProgressing; return v }, rollout.CmdResume, "not paused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := refusal(c.v(base), c.cmd)
			if !strings.Contains(got, c.want) {
				t.Errorf("refusal %q, want it to say %q", got, c.want)
			}
		})
	}
}
