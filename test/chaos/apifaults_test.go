package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/faultproxy"
)

// newProxy fronts the cluster's API server with a fault proxy.
func newProxy(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	tlsCfg, err := faultproxy.TLSFor(env.cluster.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Upstream, cfg.TLS = env.cluster.APIServer, tlsCfg
	p, err := faultproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestTheFaultProxyFrontsTheRealAPIServer: a failed write does not happen,
// a lost answer's write does, and a watch streams through.
func TestTheFaultProxyFrontsTheRealAPIServer(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	ctx := context.Background()
	ns := "chaos-proxy"
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, faultproxy.Config{WriteFailRate: 1, Codes: []int{500}})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	rc, err := cluster.RESTConfigFor(path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	}
	watch, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("a watch through the proxy: %v", err)
	}
	defer watch.Stop()

	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm("refused"), metav1.CreateOptions{}); !apierrors.IsInternalError(err) {
		t.Fatalf("want an injected internal error, got %v", err)
	}
	if _, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, "refused", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused write happened: %v", err)
	}
	p2 := newProxy(t, faultproxy.Config{WriteFailRate: 1, Codes: []int{500}, LostShare: 1})
	if err := p2.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	rc2, _ := cluster.RESTConfigFor(path)
	cs2, _ := kubernetes.NewForConfig(rc2)
	if _, err := cs2.CoreV1().ConfigMaps(ns).Create(ctx, cm("lost"), metav1.CreateOptions{}); !apierrors.IsInternalError(err) {
		t.Fatalf("want an injected internal error, got %v", err)
	}
	if _, err := env.client.CoreV1().ConfigMaps(ns).Get(ctx, "lost", metav1.GetOptions{}); err != nil {
		t.Errorf("the write whose answer was lost did not happen: %v", err)
	}
	// The namespace also gets kube-root-ca.crt from the controller manager.
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-watch.ResultChan():
			m, ok := ev.Object.(*corev1.ConfigMap)
			seen = ok && m.Name == "lost"
		case <-timeout:
			t.Fatal("the watch through the proxy did not see the ConfigMap lost")
		}
	}
}

// TestAPIServerFaultsCanarydConvergesWithoutDuplicateSteps points canaryd at
// the API server through the fault proxy: 10 % of its writes fail with 500,
// 429 or 409 (half the 500s after the write was made: a lost answer), every
// other request waits up to 200 ms. Good rollouts must still be promoted and
// bad ones rolled back, each step taken exactly once.
func TestAPIServerFaultsCanarydConvergesWithoutDuplicateSteps(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	goods, bads := 1, 1
	if *full {
		goods, bads = 3, 2
	}
	sc := begin("API writes failing 10% (500/429/409, lost answers), ≤200ms delays", "new image → end state", goods+bads)
	seed := uint64(time.Now().UnixNano())
	p := newProxy(t, faultproxy.Config{WriteFailRate: 0.1, Codes: []int{500, 429, 409}, LostShare: 0.5, MaxDelay: 200 * time.Millisecond, Seed: seed})
	t.Logf("fault seed %d", seed)
	w := newWorld(t, "chaos-apifaults")
	w.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(w.kubeconfig); err != nil {
		t.Fatal(err)
	}
	var apps []*app
	for i := 0; i < goods+bads; i++ {
		apps = append(apps, w.app(fmt.Sprintf("faults-%d", i), 2, nil, healthy, 40))
	}
	w.start()
	for _, a := range apps {
		a.adopted()
	}
	deployed := time.Now()
	for i, a := range apps {
		if i < goods {
			a.deploy("example.com/"+a.name+":2.0", healthy)
		} else {
			a.deploy("example.com/"+a.name+":2.0-bad", broken)
		}
	}
	var slowest time.Duration
	for _, a := range apps {
		a.waitStatus("a final phase", 5*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
		slowest = max(slowest, time.Since(deployed))
	}
	converged, violations := 0, 0
	for i, a := range apps {
		var why string
		if i < goods {
			why = a.endedPromoted("example.com/" + a.name + ":2.0")
		} else {
			why = a.endedRolledBack()
		}
		if why == "" {
			converged++
		} else {
			t.Errorf("%s: %s", a.name, why)
		}
		violations += a.violations()
	}
	if !w.alive() {
		t.Error("canaryd exited under API faults")
	}
	s := p.Stats()
	t.Logf("proxy: %s", s)
	if s.Faults() == 0 {
		t.Error("no fault was injected: the scenario tested nothing")
	}
	// Recovery here is the whole rollout under faults (without them: about
	// 3 intervals plus the promotion, ~20 s): the proxy's per-write figure
	// mostly measures how long canaryd had nothing to write, so it is only
	// logged above.
	sc.end(converged, violations, slowest)
}

// TestAStepWhoseSplitWriteIsSlowStillLastsItsInterval holds every
// TrafficSplit write canaryd makes for interval + 1 s (a slow or throttled
// API server for that one kind of write). Each step must still expose the
// canary at its weight for the whole interval: the split rule of the auditor
// (with its 1 s allowance) and the exact weight timeline say whether it did.
func TestAStepWhoseSplitWriteIsSlowStillLastsItsInterval(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	sc := begin("split writes held interval+1s", "new image → end state", 1)
	p := newProxy(t, faultproxy.Config{})
	w := newWorld(t, "chaos-slow-split")
	w.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(w.kubeconfig); err != nil {
		t.Fatal(err)
	}
	a := w.app("web", 2, nil, healthy, 40)
	w.start()
	a.adopted()
	p.SetHold("/trafficsplits/", interval+time.Second)
	deployed := time.Now()
	a.deploy("example.com/web:2.0", healthy)
	a.waitStatus("a final phase", 5*time.Minute, func(s rollout.Status) bool { return final(s.Phase) })
	took := time.Since(deployed)
	converged := 1
	if why := a.endedPromoted("example.com/web:2.0"); why != "" {
		t.Error(why)
		converged = 0
	}
	t.Logf("%d split writes held %s; rollout took %s", p.Stats().Held, interval+time.Second, took.Round(100*time.Millisecond))
	sc.end(converged, a.violations(), took)
}
