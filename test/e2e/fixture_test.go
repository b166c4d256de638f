package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/meshsim"
)

// fixture is one scenario: a namespace, an app "web" in it, and a canaryd
// process watching only that namespace. Given/When/Then methods read as the
// scenario does.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	name    string
	proc    *exec.Cmd
	log     string
	args    []string
	auditor *auditor
}

// interval is every scenario's step interval: short enough for CI, long
// enough for several 1 s scrapes per step.
const interval = 5 * time.Second

func given(t *testing.T, ns string) *fixture {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{t: t, ctx: ctx, ns: ns, name: "web", log: filepath.Join(env.dir, ns+"-canaryd.log")}
	_, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		f.stopCanaryd(syscall.SIGTERM)
		if f.auditor != nil {
			f.auditor.stop()
		}
		if t.Failed() {
			f.dumpLog()
		}
		cancel()
	})
	return f
}

// canaryd starts (or restarts) canaryd for this namespace.
func (f *fixture) canaryd(extra ...string) *fixture {
	f.t.Helper()
	if len(extra) > 0 || f.args == nil {
		f.args = append([]string{
			"run", "--kubeconfig", env.cluster.Kubeconfig, "--namespaces", f.ns, "--listen", "127.0.0.1:0",
			"--prometheus-url", env.cluster.Prometheus.URL, "--scrape-interval", "1s", "--analysis-period", "1s",
			"--default-interval", interval.String(), "--default-min-requests", "5", "--log-level", "debug",
		}, extra...)
	}
	logf, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(env.canaryd, f.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("starting canaryd: %v", err)
	}
	_ = logf.Close()
	f.proc = cmd
	return f
}

func (f *fixture) stopCanaryd(sig syscall.Signal) {
	if f.proc == nil {
		return
	}
	_ = f.proc.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = f.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = f.proc.Process.Kill()
		<-done
	}
	f.proc = nil
}

func (f *fixture) dumpLog() {
	b, _ := os.ReadFile(f.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	f.t.Logf("canaryd log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
	if st, err := f.tryStatus(); err == nil {
		f.t.Logf("status: %+v", st)
	}
}

// app creates Deployment web (2 replicas, opted in) and its Service with
// 40 requests/s from the mesh simulator. Its pods answer with the given
// behaviour (meshsim annotations).
func (f *fixture) app(annotations map[string]string, behaviour map[string]string) *fixture {
	f.t.Helper()
	two := int32(2)
	labels := map[string]string{"app": f.name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: f.name, Namespace: f.ns, Labels: map[string]string{rollout.LabelEnabled: "true"}, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: behaviour},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.com/web:1.0",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := env.client.AppsV1().Deployments(f.ns).Create(f.ctx, d, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating Deployment: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: f.name, Namespace: f.ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := env.client.CoreV1().Services(f.ns).Create(f.ctx, svc, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating Service: %v", err)
	}
	// Traffic starts once the app's pods are ready behind its Service, as
	// it would for an app already serving when it is opted in.
	f.waitFor("the app's endpoints", time.Minute, func() (bool, error) {
		n, err := readyEndpoints(f.ctx, f.ns, f.name)
		return n == 2, err
	})
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"meshsim/rps": "40"}}})
	if _, err := env.client.CoreV1().Services(f.ns).Patch(f.ctx, f.name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		f.t.Fatalf("starting traffic: %v", err)
	}
	return f
}

// audit starts the traffic auditor for this app.
func (f *fixture) audit() *fixture {
	f.auditor = startAuditor(f.ctx, f.t, f.ns, f.name)
	return f
}

// deploy changes the app's image and pod behaviour: a new revision.
func (f *fixture) deploy(image string, behaviour map[string]string) {
	f.t.Helper()
	patch := map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": behaviour},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
	}}}
	f.patch(patch)
}

func (f *fixture) annotate(key, value string) {
	f.t.Helper()
	f.patch(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
}

func (f *fixture) patch(p map[string]any) {
	f.t.Helper()
	b, _ := json.Marshal(p)
	if _, err := env.client.AppsV1().Deployments(f.ns).Patch(f.ctx, f.name, types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
		f.t.Fatalf("patching %s: %v", f.name, err)
	}
}

func (f *fixture) deployment() *appsv1.Deployment {
	f.t.Helper()
	d, err := env.client.AppsV1().Deployments(f.ns).Get(f.ctx, f.name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("reading %s: %v", f.name, err)
	}
	return d
}

func (f *fixture) tryStatus() (rollout.Status, error) {
	d, err := env.client.AppsV1().Deployments(f.ns).Get(f.ctx, f.name, metav1.GetOptions{})
	if err != nil {
		return rollout.Status{}, err
	}
	return rollout.ParseStatus(d.Annotations[rollout.AnnotationStatus])
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func (f *fixture) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
}

// waitPhase waits for the status phase and returns the status.
func (f *fixture) waitPhase(p rollout.Phase, timeout time.Duration) rollout.Status {
	f.t.Helper()
	var st rollout.Status
	f.waitFor("phase "+string(p), timeout, func() (bool, error) {
		var err error
		st, err = f.tryStatus()
		return err == nil && st.Phase == p, fmt.Errorf("phase %q: %s", st.Phase, st.Message)
	})
	return st
}

func (f *fixture) waitStatus(what string, timeout time.Duration, cond func(rollout.Status) bool) rollout.Status {
	f.t.Helper()
	var st rollout.Status
	f.waitFor(what, timeout, func() (bool, error) {
		var err error
		st, err = f.tryStatus()
		return err == nil && cond(st), fmt.Errorf("status %+v", st)
	})
	return st
}

// events lists the Events on the app's Deployment with the given reason.
func (f *fixture) events(reason string) []corev1.Event {
	f.t.Helper()
	list, err := env.client.CoreV1().Events(f.ns).List(f.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + f.name})
	if err != nil {
		f.t.Fatalf("listing events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if reason == "" || e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func (f *fixture) waitEvent(reason string, timeout time.Duration) corev1.Event {
	f.t.Helper()
	var ev corev1.Event
	f.waitFor("event "+reason, timeout, func() (bool, error) {
		es := f.events(reason)
		if len(es) > 0 {
			ev = es[0]
		}
		return len(es) > 0, nil
	})
	return ev
}

// stats sums the mesh simulator's counters for the app's apex by backend.
func (f *fixture) stats() map[string]meshsim.Counts {
	out := map[string]meshsim.Counts{}
	for r, c := range env.sim.Stats() {
		if r.Namespace == f.ns && r.Service == f.name {
			out[r.Backend] = c
		}
	}
	return out
}

func (f *fixture) noEndpointFailures() uint64 {
	var n uint64
	for _, c := range f.stats() {
		n += c.NoEndpoint
	}
	return n
}

func (f *fixture) exists(get func() error) bool {
	err := get()
	return err == nil || !apierrors.IsNotFound(err)
}

var _ = bytes.NewBuffer
