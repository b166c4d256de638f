package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// TestOutagesOfPrometheusThenTheAPIServerMidRollout takes down, one after
// the other in one rollout, what every other scenario shares; so it is not
// parallel (Go runs a package's serial tests before releasing the parallel
// ones), and both outages share one rollout to keep the short run short.
//
//  1. Prometheus stops mid-step (20 s in the short run, 5 minutes in the full
//     one): the rollout must hold (phase Held, an `error` verdict, an
//     AnalysisError Warning event; no step, no promotion, no rollback however
//     long it lasts) and go on once Prometheus is back.
//  2. Right after it goes on, kube-apiserver and etcd stop (3 s down in the
//     short run, 15 s in the full one) and start again: canaryd must
//     reconnect by itself.
//
// The rollout must then end promoted, every step once, 0 violations.
func TestOutagesOfPrometheusThenTheAPIServerMidRollout(t *testing.T) {
	outage, down := 20*time.Second, 3*time.Second
	if *full {
		outage, down = 5*time.Minute, 15*time.Second
	}
	promRow := begin(fmt.Sprintf("Prometheus down %s mid-step", outage), "Prometheus ready → rollout out of Held", 1)
	apiRow := begin(fmt.Sprintf("kube-apiserver+etcd down %s mid-step", down), "API ready → next status write", 1)
	w := newWorld(t, "chaos-outage")
	prom := env.cluster.Prometheus
	t.Cleanup(func() {
		if prom.Pid() == 0 {
			_ = prom.Restart(context.Background()) // the next scenarios need it
		}
	})
	a := w.app("web", 2, nil, healthy, 40)
	w.start()
	a.adopted()
	a.deploy("example.com/web:2.0", healthy)
	a.waitStatus("step 1", 2*time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step >= 1 })
	a.waitSplitAtStatus()

	// 1. Prometheus.
	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	changes := len(a.auditor.Changes())
	st := a.waitStatus("held on an error verdict", interval+30*time.Second, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseHeld && s.LastCheck != nil && s.LastCheck.Verdict == analysis.Error
	})
	heldAfter := time.Since(stopped)
	t.Logf("held %s after Prometheus stopped, at step %d: %s", heldAfter.Round(100*time.Millisecond), st.Step, st.LastCheck.Reason)
	w.waitFor("an AnalysisError Warning event", 10*time.Second, func() (bool, error) {
		for _, e := range a.events("AnalysisError") {
			if e.Type == "Warning" {
				return true, nil
			}
		}
		return false, nil
	})
	// It holds for the whole outage: nothing moves.
	for time.Since(stopped) < outage {
		s, err := a.status()
		if err == nil && s.Phase != rollout.PhaseHeld {
			t.Fatalf("%s into the outage the rollout left Held: %s", time.Since(stopped).Round(time.Second), describe(s))
		}
		time.Sleep(500 * time.Millisecond)
	}
	promOK := 1
	if n := len(a.auditor.Changes()); n != changes {
		t.Errorf("the canary weight changed during the outage: %v", a.auditor.Weights())
		promOK = 0
	}
	if err := prom.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	a.waitStatus("moving again", 2*time.Minute, func(s rollout.Status) bool { return s.Phase != rollout.PhaseHeld })
	promRecovery := time.Since(back)
	// Events are recorded asynchronously: give it a moment.
	if !poll(10*time.Second, func() (bool, error) { return len(a.events("Resumed")) > 0, nil }) {
		t.Error("no Resumed event after Prometheus came back")
		promOK = 0
	}
	t.Logf("Prometheus down %s: held after %s, moving again %s after it was back", outage, heldAfter.Round(100*time.Millisecond), promRecovery.Round(100*time.Millisecond))

	// 2. The API server and etcd, at once: often between the status write
	// of the step canaryd went on to and its split write. That step's
	// clock must not run until its weight is in place, or it would be
	// judged on the previous step's traffic and skipped.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.cluster.RestartAPIServer(ctx, down); err != nil {
		t.Fatalf("restarting the API server: %v", err)
	}
	up := time.Now()
	d, err := a.deployment()
	if err != nil {
		t.Fatalf("reading the Deployment after the restart: %v", err)
	}
	was := d.Annotations[rollout.AnnotationStatus]
	// Recovery: canaryd writes status again. The next step is due at most
	// an interval later, so this is bounded by the interval plus the time
	// it takes to reconnect.
	w.waitFor("canaryd writing again", 2*time.Minute, func() (bool, error) {
		d, err := a.deployment()
		return err == nil && d.Annotations[rollout.AnnotationStatus] != was, err
	})
	apiRecovery := time.Since(up)
	apiOK := 1
	if !w.alive() {
		t.Error("canaryd exited during the API server restart")
		apiOK = 0
	}
	samples, blind, _ := a.auditor.Stats()
	t.Logf("API server and etcd down %s: canaryd wrote again %s after they were back; auditor blind for %d of %d samples",
		down, apiRecovery.Round(100*time.Millisecond), blind, samples)

	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		promOK, apiOK = 0, 0
	}
	violations := a.violations()
	promRow.end(promOK, violations, promRecovery)
	apiRow.end(apiOK, violations, apiRecovery)
}
