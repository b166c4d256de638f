package chaos

import (
	"context"
	"fmt"
	"time"

	"testing"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// The outage scenarios are not parallel: they take down what every other
// scenario shares (Prometheus, the API server). Go runs a package's serial
// tests before releasing the parallel ones, so they run alone.

// TestPrometheusOutageHoldsTheRolloutAndItResumes stops Prometheus mid-step
// (20 s in the short run, 5 minutes in the full one): the rollout must hold
// (phase Held, an `error` verdict, an AnalysisError Warning event; no step,
// no promotion, no rollback however long it lasts), and finish once
// Prometheus is back.
func TestPrometheusOutageHoldsTheRolloutAndItResumes(t *testing.T) {
	outage := 20 * time.Second
	if *full {
		outage = 5 * time.Minute
	}
	sc := begin(fmt.Sprintf("Prometheus down %s mid-step", outage), "Prometheus ready → rollout out of Held", 1)
	w := newWorld(t, "chaos-prom")
	prom := env.cluster.Prometheus
	t.Cleanup(func() {
		if prom.Pid() == 0 {
			_ = prom.Restart(context.Background()) // the next scenarios need it
		}
	})
	a := w.app("web", 2, nil, healthy, 20)
	w.start()
	a.adopted()
	a.deploy("example.com/web:2.0", healthy)
	a.waitStatus("step 1", 2*time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step >= 1 })

	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	changes := len(a.auditor.Changes())
	st := a.waitStatus("held on an error verdict", interval+30*time.Second, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseHeld && s.LastCheck != nil && s.LastCheck.Verdict == analysis.Error
	})
	heldAfter := time.Since(down)
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
	for time.Since(down) < outage {
		s, err := a.status()
		if err == nil && s.Phase != rollout.PhaseHeld {
			t.Fatalf("%s into the outage the rollout left Held: %+v", time.Since(down).Round(time.Second), s)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := len(a.auditor.Changes()); n != changes {
		t.Errorf("the canary weight changed during the outage: %v", a.auditor.Weights())
	}

	if err := prom.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	a.waitStatus("moving again", 2*time.Minute, func(s rollout.Status) bool { return s.Phase != rollout.PhaseHeld })
	recovery := time.Since(back)
	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	if len(a.events("Resumed")) == 0 {
		t.Error("no Resumed event after Prometheus came back")
	}
	violations := a.violations()
	t.Logf("Prometheus down %s: held after %s, moving again %s after it was back", outage, heldAfter.Round(100*time.Millisecond), recovery.Round(100*time.Millisecond))
	sc.end(converged, violations, recovery)
}

// TestAPIServerRestartMidRolloutIsSurvived stops kube-apiserver and etcd
// mid-rollout (3 s down in the short run, 15 s in the full one) and starts
// them again: canaryd must reconnect by itself and finish the rollout with
// nothing skipped or repeated.
func TestAPIServerRestartMidRolloutIsSurvived(t *testing.T) {
	down := 3 * time.Second
	if *full {
		down = 15 * time.Second
	}
	sc := begin(fmt.Sprintf("kube-apiserver+etcd down %s", down), "API ready → next status write", 1)
	w := newWorld(t, "chaos-apiserver")
	a := w.app("web", 2, nil, healthy, 20)
	w.start()
	a.adopted()
	a.deploy("example.com/web:2.0", healthy)
	a.waitStatus("step 1", 2*time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step >= 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.cluster.RestartAPIServer(ctx, down); err != nil {
		t.Fatalf("restarting the API server: %v", err)
	}
	back := time.Now()
	d, err := a.deployment()
	if err != nil {
		t.Fatalf("reading the Deployment after the restart: %v", err)
	}
	was := d.Annotations[rollout.AnnotationStatus]
	// Recovery: canaryd writes status again (the next step is due at most
	// one interval later, so this is bounded by the interval plus the time
	// to reconnect).
	w.waitFor("canaryd writing again", 2*time.Minute, func() (bool, error) {
		d, err := a.deployment()
		return err == nil && d.Annotations[rollout.AnnotationStatus] != was, err
	})
	recovery := time.Since(back)
	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	if !w.alive() {
		t.Error("canaryd exited during the API server restart")
		converged = 0
	}
	violations := a.violations()
	samples, blind, _ := a.auditor.Stats()
	t.Logf("API server and etcd down %s: canaryd wrote again %s after they were back; auditor blind for %d of %d samples",
		down, recovery.Round(100*time.Millisecond), blind, samples)
	sc.end(converged, violations, recovery)
}
