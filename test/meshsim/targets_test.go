package meshsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func readTargets(t *testing.T, path string) []targetGroup {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read targets: %v", err)
	}
	var groups []targetGroup
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatalf("targets file is not file_sd JSON: %v\n%s", err, b)
	}
	return groups
}

func TestTargetsFileLabelsPodsWithTheirDeployment(t *testing.T) {
	var c cluster
	stable := c.workload("web", 1, nil)
	canary := c.workload("web-canary", 1, nil)
	// An orphan ReplicaSet's pod and a pod whose ReplicaSet is not (yet) known.
	c.objs = append(c.objs, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "early", UID: "uid-early",
			OwnerReferences: []metav1.OwnerReference{ctrlRef("ReplicaSet", "not-yet-cached")}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.9.9"},
	})
	// Pods that Linkerd would not mesh.
	c.objs = append(c.objs,
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.9.1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opted-out", Annotations: ann(annInject, "disabled")},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.9.2"}},
	)
	path := filepath.Join(t.TempDir(), "targets.json")
	s, _ := c.start(t, Config{TargetsFile: path})

	groups := readTargets(t, path)
	if len(groups) != 2 {
		t.Fatalf("got %d target groups, want 2 (stable and canary pod): %+v", len(groups), groups)
	}
	for i, tc := range []struct {
		pod        *corev1.Pod
		deployment string
	}{{stable[0], "web"}, {canary[0], "web-canary"}} {
		g := groups[i]
		want := map[string]string{
			"__metrics_path__":                                        "/pods/test/" + tc.pod.Name + "/metrics",
			"__meta_kubernetes_namespace":                             ns,
			"__meta_kubernetes_pod_name":                              tc.pod.Name,
			"__meta_kubernetes_pod_label_app":                         tc.deployment,
			"__meta_kubernetes_pod_label_pod_template_hash":           "5d8f7c",
			"__meta_kubernetes_pod_label_linkerd_io_proxy_deployment": tc.deployment,
		}
		for k, v := range want {
			if g.Labels[k] != v {
				t.Errorf("group %d label %s = %q, want %q", i, k, g.Labels[k], v)
			}
		}
		if len(g.Targets) != 1 || g.Targets[0] != s.Addr() {
			t.Errorf("group %d targets = %v, want the simulator's address %q", i, g.Targets, s.Addr())
		}
	}
}

// TestRunServesAndCleansUp runs the whole simulator on fake clients: it must listen on loopback, serve both
// expositions over HTTP, write the targets file before Ready, and empty it when stopped.
func TestRunServesAndCleansUp(t *testing.T) {
	var c cluster
	pods := c.workload("web", 1, nil)
	c.service("web", ann(annRPS, "50"), true, pods...)
	path := filepath.Join(t.TempDir(), "targets.json")
	s, _ := c.start(t, Config{TargetsFile: path, Tick: 10 * time.Millisecond})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run returned before Ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want a loopback address", s.Addr())
	}
	if g := readTargets(t, path); len(g) != 1 || g[0].Targets[0] != s.Addr() {
		t.Errorf("targets at Ready = %+v, want one group at %s", g, s.Addr())
	}
	time.Sleep(300 * time.Millisecond) // ≈15 requests at 50 rps

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/pods/test/" + pods[0].Name + "/metrics")
	if code != 200 || parseExposition(t, body)["request_total"].Metric[0].GetCounter().GetValue() == 0 {
		t.Errorf("pod exposition: %d, want 200 with requests counted:\n%s", code, body)
	}
	code, body = get("/metrics")
	if code != 200 || !strings.Contains(body, `meshsim_requests_total{backend="web",namespace="test",outcome="success",service="web"}`) {
		t.Errorf("/metrics: %d, want meshsim_requests_total for web:\n%s", code, body)
	}
	if code, _ = get("/pods/test/nope/metrics"); code != 404 {
		t.Errorf("unknown pod: %d, want 404", code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if g := readTargets(t, path); len(g) != 0 {
		t.Errorf("targets after stop = %+v, want none", g)
	}
}

func TestListenAddrMustBeLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:9000": true, "localhost:0": true, "0.0.0.0:9000": false, ":9000": false, "10.0.0.1:80": false} {
		_, err := newSim(Config{ListenAddr: addr}, nil, nil, nil)
		if (err == nil) != ok {
			t.Errorf("ListenAddr %q: err = %v, want ok = %v", addr, err, ok)
		}
	}
}

// The targets file is rewritten when a pod changes (here its IP), and left alone by rebuilds that change no pod.
func TestTargetsFileFollowsPodChangesAndOnlyThem(t *testing.T) {
	var c cluster
	pods := c.workload("web", 1, nil)
	path := filepath.Join(t.TempDir(), "targets.json")
	s, kube := c.start(t, Config{TargetsFile: path})
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	s.writeTargets(s.buildWorld()) // nothing changed
	if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) {
		t.Fatalf("a rebuild that changed no pod replaced the targets file (%v)", err)
	}

	moved := pods[0].DeepCopy()
	moved.Status.PodIP = "10.42.7.7"
	if _, err := kube.CoreV1().Pods(ns).UpdateStatus(context.Background(), moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := s.buildWorld()
		if p := w.pods[podKey{ns, moved.Name}]; p != nil && p.ip == "10.42.7.7" {
			s.writeTargets(w)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the simulator's cache never saw the pod's new IP")
		}
		time.Sleep(10 * time.Millisecond)
	}
	groups := readTargets(t, path)
	if len(groups) != 1 || groups[0].Labels["__meta_kubernetes_pod_ip"] != "10.42.7.7" {
		t.Errorf("targets after the pod moved: %+v", groups)
	}
}
