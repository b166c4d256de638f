package helm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/audit"
)

// The scenario's app, as the e2e suite builds it: Deployment web (two
// replicas, opted in) behind Service web, 40 requests/s from the mesh
// simulator, pods answering with meshsim's behaviour annotations.

var healthy = map[string]string{"meshsim/error-rate": "0.001", "meshsim/latency-ms": "10"}

// interval is the step interval the scenario runs with: short enough for
// CI, long enough for several 1 s scrapes per step.
const interval = 5 * time.Second

type app struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	ns     string
	audit  *audit.Auditor
}

func newApp(t *testing.T, client kubernetes.Interface, ns string) *app {
	t.Helper()
	a := &app{t: t, ctx: context.Background(), client: client, ns: ns}
	two := int32(2)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{rollout.LabelEnabled: "true"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: healthy},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/web:1.0",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(a.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Deployment web: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := client.CoreV1().Services(ns).Create(a.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service web: %v", err)
	}
	waitFor(t, "web's two endpoints", time.Minute, func() (bool, error) {
		n, err := audit.ReadyEndpoints(a.ctx, client, ns, "web")
		return n == 2, err
	})
	patch := []byte(`{"metadata":{"annotations":{"meshsim/rps":"40"}}}`)
	if _, err := client.CoreV1().Services(ns).Patch(a.ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("starting traffic: %v", err)
	}
	return a
}

func (a *app) startAudit(dyn dynamic.Interface) {
	a.t.Helper()
	au, err := audit.Start(a.ctx, audit.Config{Client: a.client, Dynamic: dyn, Namespace: a.ns, App: "web", Interval: interval})
	if err != nil {
		a.t.Fatal(err)
	}
	a.audit = au
	a.t.Cleanup(au.Stop)
}

func (a *app) status() (rollout.Status, error) {
	d, err := a.client.AppsV1().Deployments(a.ns).Get(a.ctx, "web", metav1.GetOptions{})
	if err != nil {
		return rollout.Status{}, err
	}
	return rollout.ParseStatus(d.Annotations[rollout.AnnotationStatus])
}

func (a *app) waitPhase(p rollout.Phase, timeout time.Duration) rollout.Status {
	a.t.Helper()
	var st rollout.Status
	waitFor(a.t, "phase "+string(p), timeout, func() (bool, error) {
		var err error
		st, err = a.status()
		return err == nil && st.Phase == p, fmt.Errorf("phase %q: %s (%w)", st.Phase, st.Message, err)
	})
	return st
}

// adopted: Idle, the split at stable 100 %, the Deployment paused.
func (a *app) adopted() {
	a.t.Helper()
	a.waitPhase(rollout.PhaseIdle, time.Minute)
	waitFor(a.t, "split at stable 100%", 30*time.Second, func() (bool, error) {
		w := a.audit.Weights()
		return len(w) > 0 && w[len(w)-1] == 0, nil
	})
}

// deploy bumps the image: a new revision.
func (a *app) deploy(image string) {
	a.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
	if _, err := a.client.AppsV1().Deployments(a.ns).Patch(a.ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		a.t.Fatalf("deploying %s: %v", image, err)
	}
}

func (a *app) eventReasons() map[string]int {
	a.t.Helper()
	list, err := a.client.CoreV1().Events(a.ns).List(a.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
	if err != nil {
		a.t.Fatalf("listing events: %v", err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		out[e.Reason]++
	}
	return out
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
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
	t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
}

// daemon is a canaryd process writing its JSON log to a file.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startDaemon(t *testing.T, bin, logFile string, args ...string) *daemon {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting canaryd: %v", err)
	}
	_ = f.Close()
	d := &daemon{t: t, cmd: cmd, log: logFile, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			d.dumpLog()
		}
	})
	return d
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func (d *daemon) dumpLog() {
	lines := strings.Split(strings.TrimSpace(d.logText()), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	d.t.Logf("canaryd log %s (last %d lines):\n%s", d.log, len(lines), strings.Join(lines, "\n"))
}

// metricsURL waits for the "canaryd starting" log line and returns its
// /metrics URL (canaryd listens on 127.0.0.1:0).
func (d *daemon) metricsURL() string {
	d.t.Helper()
	var url string
	waitFor(d.t, "canaryd's listen address in its log", 30*time.Second, func() (bool, error) {
		sc := bufio.NewScanner(strings.NewReader(d.logText()))
		for sc.Scan() {
			var line struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "canaryd starting" && line.Listen != "" {
				url = "http://" + line.Listen + "/metrics"
				return true, nil
			}
		}
		return false, nil
	})
	return url
}
