package chaos

import (
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/audit"
)

// A person edits the Deployment while a canary runs. Each edit has one
// defined outcome (DESIGN.md), and none may leave traffic on a backend
// without a ready endpoint.

// editWorld is a world with one app mid-rollout at the given step.
func editWorld(t *testing.T, ns string, step int) (*world, *app) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	w := newWorld(t, ns)
	a := w.app("web", 2, nil, healthy, 40)
	w.start()
	a.adopted()
	a.deploy("example.com/web:2.0", healthy)
	a.waitStatus("step", 2*time.Minute, func(s rollout.Status) bool {
		return s.Phase == rollout.PhaseProgressing && s.Step == step
	})
	return w, a
}

func (a *app) canaryReplicas() (spec, ready int32) {
	d, err := env.client.AppsV1().Deployments(a.w.ns).Get(a.w.ctx, a.name+"-canary", metav1.GetOptions{})
	if err != nil {
		return -1, -1
	}
	return *d.Spec.Replicas, d.Status.ReadyReplicas
}

// A new image while the canary runs: the rollout starts over at step 1
// with the newest revision, and promotes it.
func TestEditNewImageMidRolloutStartsOverAtStepOne(t *testing.T) {
	sc := begin("edit: new image mid-rollout", "edit → defined outcome seen", 1)
	w, a := editWorld(t, "chaos-edit-image", 2)
	old, _ := a.status()
	edited := time.Now()
	a.deploy("example.com/web:3.0", healthy)
	st := a.waitStatus("the new revision at step 1", time.Minute, func(s rollout.Status) bool {
		return s.Revision != old.Revision && s.Step == 1
	})
	recovery := time.Since(edited)
	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromotedAfter("example.com/web:3.0", []int{-1, 0, 100, 200, 0, 100, 200, 500, 1000, 0}); why != "" {
		t.Error(why)
		converged = 0
	}
	if len(a.events("Superseded")) == 0 {
		t.Error("no Superseded event")
	}
	t.Logf("revision %s superseded by %s at step 2; step 1 of the new one %s later", old.Revision, st.Revision, recovery.Round(100*time.Millisecond))
	sc.end(converged, a.violations()+w.deaths(), recovery)
}

// Unpaused by hand: canaryd pauses it again at once with an Unpaused
// Warning, and the rollout goes on.
//
// The Deployment gets minReadySeconds first: kube-controller-manager then
// removes no stable pod for 10 s (a new pod counts as available only after
// them, and 25 % of 2 replicas allows none unavailable), as the readiness
// probes of a real app would hold it, where kwok's pods are ready at once.
// Without it the Deployment controller sometimes replaced both stable pods
// before canaryd paused web again, which is the next test's case.
func TestEditUnpauseByHandIsPausedAgain(t *testing.T) {
	sc := begin("edit: unpaused by hand", "edit → defined outcome seen", 1)
	w, a := editWorld(t, "chaos-edit-unpause", 1)
	a.patch(map[string]any{"spec": map[string]any{"minReadySeconds": 10}})
	edited := time.Now()
	a.patch(map[string]any{"spec": map[string]any{"paused": false}})
	var maxUpdated int32
	w.waitFor("paused again", 30*time.Second, func() (bool, error) {
		d, err := a.deployment()
		if err != nil {
			return false, err
		}
		maxUpdated = max(maxUpdated, d.Status.UpdatedReplicas)
		return d.Spec.Paused, nil
	})
	recovery := time.Since(edited)
	w.waitFor("an Unpaused Warning event", 10*time.Second, func() (bool, error) {
		for _, e := range a.events("Unpaused") {
			if e.Type == "Warning" {
				return true, nil
			}
		}
		return false, nil
	})
	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	// The Deployment controller may have begun rolling in the moment it was
	// unpaused; that is the person's doing, and the auditor says whether it
	// ever cost stable its endpoints.
	t.Logf("paused again %s after the edit; the Deployment had %d updated replicas meanwhile", recovery.Round(time.Millisecond), maxUpdated)
	if a.events("RolledOutByHand") != nil {
		t.Error("a RolledOutByHand event, though stable kept its pods")
	}
	converged = min(converged, w.fewRetries())
	sc.end(converged, a.violations()+w.deaths(), recovery)
}

// Unpaused while canaryd is down, long enough for the Deployment controller
// to replace every stable pod with the canary's revision: web-stable has no
// pod left and nothing can bring one back short of changing web's template.
// canaryd, back, moves the traffic off the empty backend, adopts the revision
// web runs as stable with a RolledOutByHand Warning, returns the traffic to
// web's own pods and scales the canary down.
func TestEditRolledOutByHandWhileCanarydIsDownIsAdopted(t *testing.T) {
	sc := begin("edit: rolled out by hand while canaryd is down", "canaryd back → no traffic to the void", 1)
	w, a := editWorld(t, "chaos-edit-rolled", 1)
	w.stop(syscall.SIGTERM)
	a.patch(map[string]any{"spec": map[string]any{"paused": false}})
	w.waitFor("web rolled out by hand", time.Minute, func() (bool, error) {
		d, err := a.deployment()
		if err != nil {
			return false, err
		}
		s := d.Status
		return s.ObservedGeneration == d.Generation && s.UpdatedReplicas == 2 && s.AvailableReplicas == 2 && s.Replicas == 2, nil
	})
	back := time.Now()
	w.start()
	// Until canaryd moves it, 900m of web's traffic goes to web-stable,
	// which has no pod: the person's doing, while canaryd was down.
	w.waitFor("the weight off the empty stable", time.Minute, func() (bool, error) {
		ws := a.auditor.Weights()
		return len(ws) > 0 && (ws[len(ws)-1] == 1000 || ws[len(ws)-1] == 0), nil
	})
	recovery := time.Since(back)
	time.Sleep(2 * interval) // a sample or two of the auditor, and requests in flight, are of the time before
	settled, lost := time.Now(), a.noEndpoint()
	a.waitStatus("a final phase", 2*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromotedAfter("example.com/web:2.0", []int{-1, 0, 100, 1000, 0}); why != "" {
		t.Error(why)
		converged = 0
	}
	if len(a.events("RolledOutByHand")) == 0 {
		t.Errorf("no RolledOutByHand event; events: %v", reasons(a.events("")))
		converged = 0
	}
	w.waitFor("the canary scaled to 0", 30*time.Second, func() (bool, error) {
		spec, _ := a.canaryReplicas()
		return spec == 0, nil
	})
	violations := 0
	for _, v := range a.auditor.Violations() {
		if v.At.After(settled) {
			t.Errorf("invariant broken after canaryd moved the traffic: %s", v)
			violations++
		}
	}
	if n := a.noEndpoint() - lost; n > 0 {
		t.Errorf("%d requests found no ready endpoint after canaryd moved the traffic", n)
		violations++
	}
	converged = min(converged, w.fewRetries())
	t.Logf("canaryd back: traffic off the empty stable in %s, %d requests lost before that", recovery.Round(time.Millisecond), lost)
	sc.end(converged, violations+w.deaths(), recovery)
}

// fewRetries fails the test when canaryd's reconciles kept failing (a
// write storm: every write of a status that changes on every reconcile
// meets a 409 on the next, thousands in a few minutes). A rollout here
// meets about 10: its cache behind kube-controller-manager's status writes
// of web and web-canary, or behind its own last write.
func (w *world) fewRetries() int {
	w.t.Helper()
	m, err := w.metrics()
	if err != nil {
		w.t.Errorf("reading canaryd's metrics: %v", err)
		return 0
	}
	n, all := m["canaryd_reconcile_errors_total"], m["canaryd_reconcile_duration_seconds_count"]
	if n > 40 {
		w.t.Errorf("%.0f reconciles failed (of %.0f): canaryd fought over its writes", n, all)
		return 0
	}
	w.t.Logf("%.0f reconciles failed and were retried (of %.0f)", n, all)
	return 1
}

func reasons(evs []corev1.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Type+"/"+e.Reason)
	}
	return out
}

// Scaled from 2 to 6 at step 1: the canary follows, so step 2 (200m) runs
// on at least ceil(0.2 × 6) = 2 ready canary replicas instead of 1 (canaryd
// waits for that capacity before it steps, and may already be sizing the
// canary for the next step's 500m: 3), and the promotion rolls all 6.
func TestEditScaleMidRolloutTheCanaryFollows(t *testing.T) {
	sc := begin("edit: scaled 2→6 mid-rollout", "edit → defined outcome seen", 1)
	w, a := editWorld(t, "chaos-edit-scale", 1)
	edited := time.Now()
	a.patch(map[string]any{"spec": map[string]any{"replicas": 6}})
	a.waitStatus("step 2", time.Minute, func(s rollout.Status) bool { return s.Step == 2 })
	spec, ready := a.canaryReplicas()
	if spec < 2 || ready < 2 {
		t.Errorf("at step 2 of 6 replicas the canary has %d (%d ready), want at least 2 ready", spec, ready)
	}
	recovery := time.Since(edited)
	a.waitStatus("a final phase", 3*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	converged := 1
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	w.waitFor("all 6 replicas on the new revision", time.Minute, func() (bool, error) {
		d, err := a.deployment()
		return err == nil && d.Status.UpdatedReplicas == 6 && d.Status.AvailableReplicas == 6, err
	})
	if t.Failed() {
		converged = 0
	}
	sc.end(converged, a.violations()+w.deaths(), recovery)
}

// Deleted mid-rollout: the garbage collector removes every object canaryd
// made (they are owned by the Deployment), canaryd recreates none of them,
// and the user's apex Service stays.
func TestEditDeleteMidRolloutLeavesNothingBehind(t *testing.T) {
	sc := begin("edit: Deployment deleted mid-rollout", "edit → defined outcome seen", 1)
	w, a := editWorld(t, "chaos-edit-delete", 1)
	// From the deletion on the app has no pods by the user's choice; what
	// is audited is what came before, and that nothing of canaryd's stays.
	a.auditor.Stop()
	violations := a.violations()
	edited := time.Now()
	if err := env.client.AppsV1().Deployments(w.ns).Delete(w.ctx, a.name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := func() (bool, error) {
		for _, get := range a.ownedObjects() {
			if err := get(); !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	}
	w.waitFor("everything canaryd made garbage-collected", time.Minute, gone)
	recovery := time.Since(edited)
	// Nothing comes back: a late reconcile must not recreate objects for a
	// Deployment that is gone.
	deadline := time.Now().Add(2 * interval)
	for time.Now().Before(deadline) {
		if ok, _ := gone(); !ok {
			t.Errorf("an object canaryd made came back after the garbage collection")
			violations++
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := env.client.CoreV1().Services(w.ns).Get(w.ctx, a.name, metav1.GetOptions{}); err != nil {
		t.Errorf("the user's apex Service must stay: %v", err)
	}
	converged := 1
	if t.Failed() {
		converged = 0
	}
	sc.end(converged, violations+w.deaths(), recovery)
}

// ownedObjects are getters for every object canaryd creates for the app.
func (a *app) ownedObjects() map[string]func() error {
	ns, name, ctx := a.w.ns, a.name, a.w.ctx
	return map[string]func() error{
		"TrafficSplit": func() error {
			_, err := env.dyn.Resource(audit.SplitGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"stable Service": func() error {
			_, err := env.client.CoreV1().Services(ns).Get(ctx, name+"-stable", metav1.GetOptions{})
			return err
		},
		"canary Service": func() error {
			_, err := env.client.CoreV1().Services(ns).Get(ctx, name+"-canary", metav1.GetOptions{})
			return err
		},
		"canary Deployment": func() error {
			_, err := env.client.AppsV1().Deployments(ns).Get(ctx, name+"-canary", metav1.GetOptions{})
			return err
		},
	}
}

// deaths reports a canaryd that died (a panic ends the process) as a
// violation.
func (w *world) deaths() int {
	w.t.Helper()
	if w.alive() {
		return 0
	}
	w.mu.Lock()
	err := w.exitErr
	w.mu.Unlock()
	w.t.Errorf("canaryd is not running any more: %v", err)
	return 1
}
