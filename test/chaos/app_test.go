package chaos

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/audit"
)

var (
	healthy = map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "10"}
	// broken fails one request in ten: a clear-cut bad canary, so that 50
	// trials test canaryd and not the judge's power on a close call.
	broken = map[string]string{"meshsim/error-rate": "0.1", "meshsim/latency-ms": "10"}
)

// Weight sequences (canary milli, -1: no split) the auditor must see.
var (
	promoted   = []int{-1, 0, 100, 200, 500, 1000, 0}
	stepsMilli = []int{100, 200, 500}
)

// app is one opted-in Deployment in a world, with its auditor.
type app struct {
	w       *world
	name    string
	auditor *audit.Auditor
}

// app creates Deployment name (opted in, with the given replicas,
// annotations and pod behaviour) and its Service, starts traffic (rps > 0)
// once its pods are ready, and starts auditing it.
func (w *world) app(name string, replicas int32, annotations, behaviour map[string]string, rps int) *app {
	w.t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns, Labels: map[string]string{rollout.LabelEnabled: "true"}, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: behaviour},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.com/" + name + ":1.0",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := env.client.AppsV1().Deployments(w.ns).Create(w.ctx, d, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating Deployment %s: %v", name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := env.client.CoreV1().Services(w.ns).Create(w.ctx, svc, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating Service %s: %v", name, err)
	}
	a := &app{w: w, name: name}
	if !w.unaudited {
		aud, err := audit.Start(w.ctx, audit.Config{Client: env.client, Dynamic: env.dyn, Namespace: w.ns, App: name, Interval: interval})
		if err != nil {
			w.t.Fatal(err)
		}
		a.auditor = aud
	}
	w.mu.Lock()
	w.apps = append(w.apps, a)
	w.mu.Unlock()
	if rps > 0 {
		// Traffic starts once the pods are ready behind the Service, as
		// for an app already serving when it is opted in.
		w.waitFor(name+"'s endpoints", time.Minute, func() (bool, error) {
			n, err := audit.ReadyEndpoints(w.ctx, env.client, w.ns, name)
			return n == int(replicas), err
		})
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"meshsim/rps": fmt.Sprint(rps)}}})
		if _, err := env.client.CoreV1().Services(w.ns).Patch(w.ctx, name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			w.t.Fatalf("starting traffic to %s: %v", name, err)
		}
	}
	return a
}

// adopted waits until the app is Idle at stable 100 %, paused.
func (a *app) adopted() *app {
	a.w.t.Helper()
	a.waitPhase(rollout.PhaseIdle, time.Minute)
	a.w.waitFor(a.name+" split at stable 100%", 30*time.Second, func() (bool, error) {
		w := a.auditor.Weights()
		return len(w) > 0 && w[len(w)-1] == 0, nil
	})
	return a
}

// deploy changes the image and pod behaviour: a new revision.
func (a *app) deploy(image string, behaviour map[string]string) {
	a.w.t.Helper()
	a.patch(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": behaviour},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
	}}})
}

func (a *app) annotate(key, value string) {
	a.w.t.Helper()
	a.patch(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
}

func (a *app) patch(p map[string]any) {
	a.w.t.Helper()
	b, _ := json.Marshal(p)
	if _, err := env.client.AppsV1().Deployments(a.w.ns).Patch(a.w.ctx, a.name, types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
		a.w.t.Fatalf("patching %s: %v", a.name, err)
	}
}

func (a *app) deployment() (*appsv1.Deployment, error) {
	return env.client.AppsV1().Deployments(a.w.ns).Get(a.w.ctx, a.name, metav1.GetOptions{})
}

func (a *app) status() (rollout.Status, error) {
	d, err := a.deployment()
	if err != nil {
		return rollout.Status{}, err
	}
	return rollout.ParseStatus(d.Annotations[rollout.AnnotationStatus])
}

// waitStatus waits until the status satisfies cond and returns it.
func (a *app) waitStatus(what string, timeout time.Duration, cond func(rollout.Status) bool) rollout.Status {
	a.w.t.Helper()
	var st rollout.Status
	a.w.waitFor(a.name+": "+what, timeout, func() (bool, error) {
		var err error
		st, err = a.status()
		return err == nil && cond(st), fmt.Errorf("status %s (%w)", describe(st), err)
	})
	return st
}

func (a *app) waitPhase(p rollout.Phase, timeout time.Duration) rollout.Status {
	a.w.t.Helper()
	return a.waitStatus("phase "+string(p), timeout, func(s rollout.Status) bool { return s.Phase == p })
}

// events lists the Events on the app's Deployment with the given reason.
func (a *app) events(reason string) []corev1.Event {
	list, err := env.client.CoreV1().Events(a.w.ns).List(a.w.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + a.name})
	if err != nil {
		return nil
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if reason == "" || e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// noEndpoint counts the app's requests that found no ready endpoint.
func (a *app) noEndpoint() uint64 {
	var n uint64
	for r, c := range env.sim.Stats() {
		if r.Namespace == a.w.ns && r.Service == a.name {
			n += c.NoEndpoint
		}
	}
	return n
}

// violations reports the auditor's findings and the mesh simulator's
// requests sent to the void as test errors, and returns how many there were.
func (a *app) violations() int {
	a.w.t.Helper()
	n := 0
	for _, v := range a.auditor.Violations() {
		a.w.t.Errorf("%s: invariant broken: %s", a.name, v)
		n++
	}
	if ne := a.noEndpoint(); ne > 0 {
		a.w.t.Errorf("%s: %d requests found no ready endpoint", a.name, ne)
		n++
	}
	return n
}

// endedPromoted checks a good rollout's end: Succeeded on the new image,
// every step walked once. It reports what is wrong, or "".
func (a *app) endedPromoted(image string) string {
	return a.endedPromotedAfter(image, promoted)
}

// endedPromotedAfter is endedPromoted with the canary weight timeline the
// auditor must have seen.
func (a *app) endedPromotedAfter(image string, weights []int) string {
	st, err := a.status()
	if err != nil {
		return err.Error()
	}
	d, err := a.deployment()
	if err != nil {
		return err.Error()
	}
	switch {
	case st.Phase != rollout.PhaseSucceeded || st.StableRevision != st.Revision:
		return "not promoted: " + describe(st)
	case d.Spec.Template.Spec.Containers[0].Image != image || !d.Spec.Paused:
		return fmt.Sprintf("after promotion: image %s, paused %v", d.Spec.Template.Spec.Containers[0].Image, d.Spec.Paused)
	}
	if got := a.settledWeights(); !reflect.DeepEqual(got, weights) {
		return fmt.Sprintf("canary weights %v, want %v (a step repeated or skipped)", got, weights)
	}
	return ""
}

// endedRolledBack checks a bad rollout's end: Failed, the bad revision
// never on a stable pod, the canary walked some steps once each and was
// returned to 0.
func (a *app) endedRolledBack() string {
	st, err := a.status()
	if err != nil {
		return err.Error()
	}
	d, err := a.deployment()
	if err != nil {
		return err.Error()
	}
	switch {
	case st.Phase != rollout.PhaseFailed || st.FailedRevision != st.Revision:
		return "not rolled back: " + describe(st)
	case d.Status.UpdatedReplicas != 0 || !d.Spec.Paused:
		return fmt.Sprintf("the bad revision reached %d stable pods (paused %v)", d.Status.UpdatedReplicas, d.Spec.Paused)
	}
	w := a.settledWeights()
	ok := len(w) >= 4 && w[0] == -1 && w[1] == 0 && w[len(w)-1] == 0
	for i := 2; ok && i < len(w)-1; i++ {
		ok = i-2 < len(stepsMilli) && w[i] == stepsMilli[i-2]
	}
	if !ok {
		return fmt.Sprintf("canary weights %v, want -1, 0, a prefix of %v, 0", w, stepsMilli)
	}
	return ""
}

// waitSplitAtStatus waits until the auditor has seen the split carry the
// weight the status says: canaryd writes status first, the split after.
func (a *app) waitSplitAtStatus() {
	a.w.t.Helper()
	a.w.waitFor(a.name+": the split at the status's weight", 30*time.Second, func() (bool, error) {
		st, err := a.status()
		ws := a.auditor.Weights()
		return err == nil && len(ws) > 0 && ws[len(ws)-1] == st.Weight, err
	})
}

// settledWeights waits a moment for the auditor to see the last change.
func (a *app) settledWeights() []int {
	poll(3*time.Second, func() (bool, error) {
		w := a.auditor.Weights()
		return len(w) > 0 && w[len(w)-1] == 0, nil
	})
	return a.auditor.Weights()
}

// describe prints a status with its last check spelled out.
func describe(st rollout.Status) string {
	s := fmt.Sprintf("%+v", st)
	if c := st.LastCheck; c != nil {
		s += fmt.Sprintf(" lastCheck{%s %s: %s}", c.Time.Format("15:04:05.000"), c.Verdict, c.Reason)
	}
	return s
}

// final reports whether a phase ends a rollout.
func final(p rollout.Phase) bool { return p == rollout.PhaseSucceeded || p == rollout.PhaseFailed }
