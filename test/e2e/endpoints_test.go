package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
)

// setCanaryReady marks every pod of web-canary ready or not, as a failing
// readiness probe would: the kubelet (here kwok) owns pod status, and the
// EndpointSlice controller follows it.
func (f *fixture) setCanaryReady(ready bool) {
	f.t.Helper()
	f.setReady(rollout.LabelRole+"="+rollout.RoleCanary, ready)
}

// setReady marks every pod the selector picks ready or not.
func (f *fixture) setReady(selector string, ready bool) {
	f.t.Helper()
	pods, err := env.client.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		f.t.Fatalf("listing pods %s: %v", selector, err)
	}
	if len(pods.Items) == 0 {
		f.t.Fatalf("no pods %s", selector)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		for j := range p.Status.Conditions {
			if c := &p.Status.Conditions[j]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				c.Status, c.LastTransitionTime = status, metav1.Now()
			}
		}
		for j := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[j].Ready = ready
		}
		if _, err := env.client.CoreV1().Pods(f.ns).UpdateStatus(f.ctx, p, metav1.UpdateOptions{}); err != nil {
			f.t.Fatalf("setting pod %s ready=%v: %v", p.Name, ready, err)
		}
	}
}

// violationsBut reports the auditor's findings as test errors, but for
// traffic to the void in the 3 s after pods turned unready at unready: they
// failed under canaryd, not by its hand, and until its split write their
// weight had nowhere to go. That reaction is allowed a moment; nothing else is.
func (f *fixture) violationsBut(unready time.Time) {
	f.t.Helper()
	for _, v := range f.auditor.Violations() {
		if v.Rule == "void" && !v.At.Before(unready) && v.At.Sub(unready) < 3*time.Second {
			f.t.Logf("while canaryd reacted: %s", v)
			continue
		}
		f.t.Errorf("invariant broken: %s", v)
	}
}

// A canary whose pods all turn unready mid-step loses its weight to stable
// at once, and the step is held, not walked on or failed; when the pods are
// ready again the step starts over and the rollout is promoted.
func TestACanaryThatLosesItsEndpointsMidStepIsHeldThenResumes(t *testing.T) {
	f := given(t, "e2e-noendpoints").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	f.waitStatus("step 2 in place", 2*time.Minute, func(s rollout.Status) bool { return s.Step == 2 && s.Applied })
	unready := time.Now()
	f.setCanaryReady(false)
	held := f.waitStatus("held for endpoints", time.Minute, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseHeld && strings.HasPrefix(s.Message, "the canary has no ready endpoint")
	})
	f.waitFor("the split back at stable", 30*time.Second, func() (bool, error) {
		w := f.auditor.weights()
		return w[len(w)-1] == 0, nil
	})
	f.waitEvent("NoReadyEndpoints", 10*time.Second)
	time.Sleep(2 * interval) // held, not walked on: a step's interval passes without an advance
	if st, _ := f.tryStatus(); st.Phase != rollout.PhaseHeld || st.Step != 2 {
		t.Fatalf("while the canary had no endpoint: %+v", st)
	}

	f.setCanaryReady(true)
	f.waitEvent("Resumed", time.Minute)
	st := f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	if f.image() != "example.com/web:2.0" {
		t.Errorf("not promoted: %+v", st)
	}
	if got, want := f.auditor.weights(), []int{-1, 0, 100, 200, 0, 200, 500, 1000, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights %v, want %v", got, want)
	}
	t.Logf("held at step %d: %s", held.Step, held.Message)
	f.violationsBut(unready)
	if on, _ := f.auditor.FirstTraffic(); on.IsZero() {
		t.Error("the auditor never saw the canary take traffic")
	}
}

// The mirror image: stable's pods all turn unready mid-step. All traffic
// goes to the canary at once and the step is held (the analysis has nothing
// to compare the canary with); when stable is ready again its traffic
// returns, the step starts over and the rollout is promoted.
func TestAStableThatLosesItsEndpointsMidStepIsHeldThenResumes(t *testing.T) {
	f := given(t, "e2e-nostable").app(nil, healthy).audit().canaryd().adopted()

	f.deploy("example.com/web:2.0", healthy)
	st := f.waitStatus("step 2 in place", 2*time.Minute, func(s rollout.Status) bool { return s.Step == 2 && s.Applied })
	stable := appsv1.DefaultDeploymentUniqueLabelKey + "=" + st.StableHash
	unready := time.Now()
	f.setReady(stable, false)
	held := f.waitStatus("held for stable's endpoints", time.Minute, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseHeld && strings.HasPrefix(s.Message, "the stable pods have no ready endpoint")
	})
	f.waitFor("all traffic on the canary", 30*time.Second, func() (bool, error) {
		w := f.auditor.weights()
		return w[len(w)-1] == 1000, nil
	})
	f.waitEvent("NoReadyEndpoints", 10*time.Second)
	time.Sleep(2 * interval) // held, not walked on
	if st, _ := f.tryStatus(); st.Phase != rollout.PhaseHeld || st.Step != 2 {
		t.Fatalf("while stable had no endpoint: %+v", st)
	}

	f.setReady(stable, true)
	f.waitEvent("Resumed", time.Minute)
	end := f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	if f.image() != "example.com/web:2.0" || len(f.events("RolledOutByHand")) > 0 {
		t.Errorf("not promoted the usual way: %+v", end)
	}
	if got, want := f.auditor.weights(), []int{-1, 0, 100, 200, 1000, 200, 500, 1000, 0}; !slices.Equal(got, want) {
		t.Errorf("canary weights %v, want %v", got, want)
	}
	t.Logf("held at step %d: %s", held.Step, held.Message)
	f.violationsBut(unready)
}
