package e2e

import (
	"context"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
)

var (
	healthy = map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "10"}
	broken  = map[string]string{"meshsim/error-rate": "0.05", "meshsim/latency-ms": "10"}
)

// adopted: the app is under canaryd's management, Idle at stable 100 %.
func (f *fixture) adopted() *fixture {
	f.t.Helper()
	f.waitPhase(rollout.PhaseIdle, time.Minute)
	f.waitFor("split at stable 100%", 30*time.Second, func() (bool, error) {
		w := f.auditor.weights()
		return len(w) > 0 && w[len(w)-1] == 0, nil
	})
	if !f.deployment().Spec.Paused {
		f.t.Fatal("the adopted Deployment is not paused")
	}
	return f
}

func (f *fixture) image() string { return f.deployment().Spec.Template.Spec.Containers[0].Image }

func (f *fixture) canaryReplicas() int32 {
	d, err := env.client.AppsV1().Deployments(f.ns).Get(f.ctx, f.name+"-canary", metav1.GetOptions{})
	if err != nil {
		return -1
	}
	return *d.Spec.Replicas
}

func TestAGoodImageIsWalkedThroughTheStepsAndPromoted(t *testing.T) {
	f := given(t, "e2e-promote").app(nil, healthy).audit().canaryd().adopted()

	start := time.Now()
	f.deploy("example.com/web:2.0", healthy)
	f.waitPhase(rollout.PhaseProgressing, 30*time.Second)
	st := f.waitPhase(rollout.PhaseSucceeded, 3*time.Minute)
	took := time.Since(start)

	if d := f.deployment(); d.Spec.Template.Spec.Containers[0].Image != "example.com/web:2.0" || !d.Spec.Paused {
		t.Errorf("after promotion: image %s, paused %v", f.image(), d.Spec.Paused)
	}
	if d := f.deployment(); d.Status.UpdatedReplicas != 2 || d.Status.AvailableReplicas != 2 {
		t.Errorf("the Deployment has not rolled: %+v", d.Status)
	}
	f.waitFor("canary scaled to 0", 30*time.Second, func() (bool, error) { return f.canaryReplicas() == 0, nil })
	f.waitFor("split back at stable 100%", 10*time.Second, func() (bool, error) {
		w := f.auditor.weights()
		return w[len(w)-1] == 0, nil
	})
	if st.StableRevision != st.Revision || st.FailedRevision != "" {
		t.Errorf("status after promotion: %+v", st)
	}
	if got, want := f.auditor.weights(), []int{-1, 0, 100, 200, 500, 1000, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("canary weights %v, want %v", got, want)
	}
	f.auditor.check(t, interval)
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint: %+v", n, f.stats())
	}
	for _, r := range []string{"Adopted", "RolloutStarted", "StepAdvanced", "Promoting", "Promoted"} {
		f.waitEvent(r, 10*time.Second) // the recorder sends Events asynchronously
	}
	t.Logf("3-step rollout with a %s interval: image bump to promoted in %s", interval, took.Round(100*time.Millisecond))
}

func TestABadImageIsRolledBackAndNotRetriedUntilAsked(t *testing.T) {
	f := given(t, "e2e-rollback").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0-bad", broken)
	st := f.waitPhase(rollout.PhaseFailed, 2*time.Minute)
	f.waitFor("the auditor sees the canary at 0", 5*time.Second, func() (bool, error) {
		_, off := f.auditor.firstTraffic()
		return !off.IsZero(), nil
	})
	on, off := f.auditor.firstTraffic()
	if on.IsZero() || off.IsZero() {
		t.Fatalf("canary traffic never started and stopped: %v", f.auditor.weights())
	}
	canary := f.stats()[f.name+"-canary"]
	t.Logf("bad canary (5%% errors vs 0.1%%, 40 rps): weight > 0 for %s, %d requests (%d failed) before weight 0; reason: %s",
		off.Sub(on).Round(100*time.Millisecond), canary.Requests, canary.Failures, st.LastCheck.Reason)

	if f.image() != "example.com/web:2.0-bad" || !f.deployment().Spec.Paused {
		t.Errorf("the Deployment should keep the bad template pending, paused")
	}
	if d := f.deployment(); d.Status.UpdatedReplicas != 0 {
		t.Errorf("the bad revision reached %d stable pods", d.Status.UpdatedReplicas)
	}
	if st.FailedRevision == "" || st.FailedRevision != st.Revision || st.StableRevision == st.Revision {
		t.Errorf("status after rollback: %+v", st)
	}
	if len(f.events("RollingBack")) == 0 || len(f.events("RolledBack")) == 0 {
		t.Error("no RollingBack/RolledBack events")
	}
	f.waitFor("canary scaled to 0", 30*time.Second, func() (bool, error) { return f.canaryReplicas() == 0, nil })

	// Not retried by itself.
	before := len(f.auditor.weights())
	time.Sleep(3 * interval)
	if got, _ := f.tryStatus(); got.Phase != rollout.PhaseFailed || len(f.auditor.weights()) != before {
		t.Fatalf("a failed revision moved on its own: %+v, weights %v", got, f.auditor.weights())
	}
	// Until asked.
	f.annotate(rollout.CmdRetry.Key(), "true")
	f.waitStatus("retry starts a new rollout", 30*time.Second, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseProgressing && strings.HasPrefix(s.LastCommand, "retry:")
	})
	if _, left := f.deployment().Annotations[rollout.CmdRetry.Key()]; left {
		t.Error("the retry annotation was not consumed")
	}
	f.annotate(rollout.CmdAbort.Key(), "true")
	f.waitPhase(rollout.PhaseFailed, time.Minute)
	f.auditor.check(t, interval)
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint", n)
	}
}

func TestManualPromotionAndAbortByAnnotation(t *testing.T) {
	f := given(t, "e2e-manual").app(map[string]string{rollout.KeyManualPromotion: "true"}, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	f.waitPhase(rollout.PhaseWaitingPromotion, 2*time.Minute)
	time.Sleep(2 * interval)
	if st, _ := f.tryStatus(); st.Phase != rollout.PhaseWaitingPromotion {
		t.Fatalf("did not wait for promote: %+v", st)
	}
	f.annotate(rollout.CmdPromote.Key(), "true")
	f.waitPhase(rollout.PhaseSucceeded, time.Minute)
	if f.image() != "example.com/web:2.0" {
		t.Fatal("not promoted")
	}

	f.deploy("example.com/web:3.0", healthy)
	f.waitStatus("step 1", time.Minute, func(s rollout.Status) bool { return s.Phase == rollout.PhaseProgressing && s.Step == 1 })
	f.annotate(rollout.CmdAbort.Key(), "now")
	st := f.waitPhase(rollout.PhaseFailed, time.Minute)
	if !strings.HasPrefix(st.LastCommand, "abort:") || st.FailedRevision != st.Revision {
		t.Errorf("after abort: %+v", st)
	}
	if d := f.deployment(); d.Status.UpdatedReplicas != 0 || len(f.events("Command")) < 2 {
		t.Errorf("abort: updated %d, Command events %d", d.Status.UpdatedReplicas, len(f.events("Command")))
	}
	f.auditor.check(t, interval)
}

func TestARestartedControllerResumesAtTheSameStepAndNeverStepsEarly(t *testing.T) {
	f := given(t, "e2e-restart").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	before := f.waitStatus("step 2", 2*time.Minute, func(s rollout.Status) bool { return s.Step == 2 })
	f.stopCanaryd(syscall.SIGKILL)
	time.Sleep(time.Second)
	f.canaryd()
	after := f.waitStatus("step 3", time.Minute, func(s rollout.Status) bool { return s.Step == 3 })
	if gap := after.StepStartedAt.Sub(*before.StepStartedAt); gap < interval {
		t.Errorf("step 3 began %s after step 2 across a restart (interval %s)", gap, interval)
	}
	f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	f.waitFor("split back at stable 100%", 10*time.Second, func() (bool, error) {
		w := f.auditor.weights()
		return w[len(w)-1] == 0, nil
	})
	if got, want := f.auditor.weights(), []int{-1, 0, 100, 200, 500, 1000, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("canary weights %v, want %v (no step repeated or skipped)", got, want)
	}
	f.auditor.check(t, interval)
}

func TestOffboardingRemovesEverythingWithoutFailingARequest(t *testing.T) {
	f := given(t, "e2e-offboard").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	f.waitStatus("step 1", time.Minute, func(s rollout.Status) bool { return s.Step == 1 })
	f.patch(map[string]any{"metadata": map[string]any{"labels": map[string]any{rollout.LabelEnabled: nil}}})

	f.waitFor("offboarded", time.Minute, func() (bool, error) {
		d := f.deployment()
		_, status := d.Annotations[rollout.AnnotationStatus]
		return !status && !d.Spec.Paused, nil
	})
	ctx := context.Background()
	for what, get := range map[string]func() error{
		"TrafficSplit": func() error {
			_, err := env.dyn.Resource(splitGVR).Namespace(f.ns).Get(ctx, f.name, metav1.GetOptions{})
			return err
		},
		"web-stable": func() error {
			_, err := env.client.CoreV1().Services(f.ns).Get(ctx, f.name+"-stable", metav1.GetOptions{})
			return err
		},
		"web-canary": func() error {
			_, err := env.client.CoreV1().Services(f.ns).Get(ctx, f.name+"-canary", metav1.GetOptions{})
			return err
		},
		"canary Deployment": func() error {
			_, err := env.client.AppsV1().Deployments(f.ns).Get(ctx, f.name+"-canary", metav1.GetOptions{})
			return err
		},
	} {
		f.waitFor(what+" deleted", 30*time.Second, func() (bool, error) { return !f.exists(get), nil })
	}
	if _, err := env.client.CoreV1().Services(f.ns).Get(ctx, f.name, metav1.GetOptions{}); err != nil {
		t.Errorf("the apex Service must stay: %v", err)
	}
	// Unpaused, the Deployment now rolls out the pending template by itself.
	f.waitFor("Deployment rolled", time.Minute, func() (bool, error) {
		d := f.deployment()
		return d.Status.UpdatedReplicas == 2 && d.Status.AvailableReplicas == 2 && d.Status.Replicas == 2, nil
	})
	time.Sleep(2 * time.Second)
	if n := f.noEndpointFailures(); n != 0 {
		t.Errorf("%d requests found no ready endpoint during offboarding", n)
	}
	if len(f.events("Offboarded")) == 0 {
		t.Error("no Offboarded event")
	}
	f.auditor.check(t, interval)
}

func TestAnInvalidAnnotationWarnsAndRoutesNothing(t *testing.T) {
	f := given(t, "e2e-invalid").app(map[string]string{rollout.KeySteps: "500m,100m"}, healthy).audit().canaryd()

	ev := f.waitEvent("InvalidConfig", time.Minute)
	if ev.Type != "Warning" || !strings.Contains(ev.Message, rollout.KeySteps) || !strings.Contains(ev.Message, "strictly increasing") {
		t.Errorf("event %s %q should name %s and what is allowed", ev.Type, ev.Message, rollout.KeySteps)
	}
	st := f.waitStatus("status message", 10*time.Second, func(s rollout.Status) bool { return strings.Contains(s.Message, rollout.KeySteps) })
	time.Sleep(2 * time.Second)
	if w := f.auditor.weights(); len(w) != 1 || w[0] != -1 {
		t.Errorf("a split was written: %v", w)
	}
	if f.deployment().Spec.Paused {
		t.Error("the Deployment was paused despite the invalid configuration")
	}
	t.Logf("status: %s", st.Message)

	// Fixed, it is adopted.
	f.annotate(rollout.KeySteps, "100m,500m")
	f.adopted()
}
