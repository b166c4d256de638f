package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/kube"
	"github.com/canaryd/canaryd/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// now is every golden test's clock.
var now = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func ago(d time.Duration) *time.Time { t := now.Add(-d); return &t }
func f64(f float64) *float64         { return &f }

// deploy is a Deployment as the API returns it, with canaryd's status and
// the given annotations. Its template revision is tmplRev's template.
func deploy(ns, name string, st *rollout.Status, ann map[string]string, image string) *appsv1.Deployment {
	two := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(now.Add(-50 * time.Hour)),
			Labels: map[string]string{rollout.LabelEnabled: "true"}, Annotations: map[string]string{}},
		Spec: appsv1.DeploymentSpec{Replicas: &two, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 2},
	}
	for k, v := range ann {
		d.Annotations[k] = v
	}
	if st != nil {
		d.Annotations[rollout.AnnotationStatus] = st.Encode()
	}
	return d
}

// rev is the revision of deploy's template for image.
func rev(image string) string {
	return kube.RevisionOf(&deploy("x", "web", nil, nil, image).Spec.Template)
}

func passCheck(at time.Duration) *rollout.Check {
	return &rollout.Check{Time: now.Add(-at), Verdict: analysis.Pass, Requests: f64(243), SuccessRate: f64(99.588), P99Ms: f64(42.5),
		Reason: "success rate 99.59% ≥ 99% and p99 42.5ms ≤ 500ms over 1m (243 requests); errors not worse than stable (SPRT accepted after 180 requests)"}
}

func TestListGolden(t *testing.T) {
	v1, v2 := rev("web:1"), rev("web:2")
	views := []view{
		viewOf(deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseProgressing, Revision: v2, StableRevision: v1, Step: 2, Weight: 200,
			StepStartedAt: ago(20 * time.Second), LastCheck: passCheck(3 * time.Second)}, nil, "web:2")),
		viewOf(deploy("shop", "cart", &rollout.Status{Phase: rollout.PhaseIdle, Revision: v1, StableRevision: v1}, nil, "web:1")),
		viewOf(deploy("billing", "invoices", &rollout.Status{Phase: rollout.PhaseFailed, Revision: v2, StableRevision: v1, FailedRevision: v2,
			Step: 1, LastCheck: &rollout.Check{Time: now.Add(-4 * time.Minute), Verdict: analysis.Fail}}, nil, "web:2")),
		viewOf(deploy("billing", "ledger", &rollout.Status{Phase: rollout.PhaseHeld, Revision: v2, StableRevision: v1, Step: 1, Weight: 125,
			Paused: true, LastCheck: &rollout.Check{Time: now.Add(-90 * time.Second), Verdict: analysis.Inconclusive}},
			map[string]string{rollout.KeySteps: "12.5,50"}, "web:2")),
		viewOf(deploy("billing", "payments", nil, nil, "web:1")),
		viewOf(deploy("billing", "refunds", &rollout.Status{Phase: rollout.PhaseIdle}, map[string]string{rollout.KeySteps: "50,10"}, "web:1")),
	}
	golden(t, "list", renderList(views[:2], false, now))
	golden(t, "list-all-namespaces", renderList(views, true, now))
}

func TestStatusGolden(t *testing.T) {
	v1, v2, v3 := rev("web:1"), rev("web:2"), rev("web:3")
	events := []event{
		{Last: now.Add(-3 * time.Minute), Reason: "RolloutStarted", Message: "new revision " + v2 + ": canary web-canary starting, steps 100m,200m,500m every 1m0s"},
		{Last: now.Add(-150 * time.Second), Reason: "StepAdvanced", Message: "canary ready; step 1/3: canary weight 100m"},
		{Last: now.Add(-80 * time.Second), Warning: true, Reason: "AnalysisFailed", Count: 2,
			Message: "check failed (1/2): success rate 97.5% < 99% over 1m (80 requests); step 1 repeats"},
		{Last: now.Add(-20 * time.Second), Reason: "StepAdvanced", Message: "step 2/3: canary weight 200m (success rate 99.59% ≥ 99% and p99 42.5ms ≤ 500ms over 1m (243 requests))"},
	}
	cases := map[string]struct {
		d      *appsv1.Deployment
		canary *[2]int32
		events []event
	}{
		"status-progressing": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseProgressing, Revision: v2, StableRevision: v1, Step: 2, Weight: 200,
				StartedAt: ago(3 * time.Minute), StepStartedAt: ago(20 * time.Second), Failures: 1, LastCheck: passCheck(3 * time.Second)}, nil, "web:2"),
			canary: &[2]int32{1, 1}, events: events,
		},
		"status-held-paused": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseHeld, Revision: v2, StableRevision: v1, Step: 1, Weight: 100,
				StepStartedAt: ago(5 * time.Minute), HeldSince: ago(4 * time.Minute), Inconclusive: 12, Paused: true,
				LastCommand: "pause: rollouts paused", Message: "paused at step 1/3 (set canaryd.io/resume to continue)",
				LastCheck: &rollout.Check{Time: now.Add(-2 * time.Second), Verdict: analysis.Inconclusive, Requests: f64(3),
					Reason: "3 canary requests over 1m, fewer than the 20 needed to judge"}},
				map[string]string{rollout.CmdResume.Key(): "2026-03-14T15:09:20Z"}, "web:2"),
			canary: &[2]int32{1, 1},
		},
		"status-waiting-promotion": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseWaitingPromotion, Revision: v2, StableRevision: v1, Step: 3, Weight: 500,
				StepStartedAt: ago(2 * time.Minute), Message: "all steps passed; set canaryd.io/promote to promote", LastCheck: passCheck(10 * time.Second)},
				map[string]string{rollout.KeyManualPromotion: "true"}, "web:2"),
			canary: &[2]int32{1, 1},
		},
		"status-promoting": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhasePromoting, Stage: rollout.StageRollStable, Revision: v2, StableRevision: v1,
				Step: 3, Weight: 1000, LastCheck: passCheck(30 * time.Second)}, nil, "web:2"),
			canary: &[2]int32{2, 2},
		},
		"status-succeeded": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseSucceeded, Revision: v2, StableRevision: v2, Step: 3,
				LastCheck: passCheck(5 * time.Minute)}, nil, "web:2"),
			canary: &[2]int32{0, 0},
		},
		"status-failed": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseFailed, Revision: v2, StableRevision: v1, FailedRevision: v2, Step: 1, Failures: 2,
				Message: "revision " + v2 + " rolled back: 2 of 2 allowed failed checks: success rate 95% < 99% over 1m (120 requests)",
				LastCheck: &rollout.Check{Time: now.Add(-70 * time.Second), Verdict: analysis.Fail, Requests: f64(120), SuccessRate: f64(95), P99Ms: f64(38),
					Reason: "success rate 95% < 99% over 1m (120 requests)"}}, nil, "web:2"),
			canary: &[2]int32{0, 0},
		},
		"status-new-template-not-picked-up": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseSucceeded, Revision: v2, StableRevision: v2, Step: 3}, nil, "web:3"),
		},
		"status-invalid-config": {
			d: deploy("shop", "web", &rollout.Status{Phase: rollout.PhaseIdle, Revision: v1, StableRevision: v1,
				Message: "invalid configuration, nothing changed: canaryd.io/steps: invalid value \"50,10\": comma-separated, strictly increasing weights"},
				map[string]string{rollout.KeySteps: "50,10"}, "web:1"),
		},
		"status-not-managed": {d: func() *appsv1.Deployment {
			d := deploy("shop", "web", nil, nil, "web:1")
			d.Labels = nil
			return d
		}()},
	}
	_ = v3
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v := viewOf(c.d)
			v.Canary, v.Events = c.canary, c.events
			golden(t, name, renderStatus(v, now))
		})
	}
}

// golden compares got with testdata/<name>.golden (rewritten with -update)
// and holds every line to the 100-column limit.
func golden(t *testing.T, name, got string) {
	t.Helper()
	for i, line := range strings.Split(got, "\n") {
		if n := utf8.RuneCountInString(line); n > width {
			t.Errorf("%s line %d is %d columns wide (max %d): %q", name, i+1, n, width, line)
		}
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}
