package helm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/cluster"
)

// TestChartRBACCarriesAFullRolloutAndRefusesTheRest installs the chart with
// helm into the local control plane, then runs canaryd as a process with
// the identity of the chart's ServiceAccount (a token from the TokenRequest
// API) and the installed Deployment's own arguments, through adoption and a
// full rollout. Any permission the chart forgot shows up as a refused
// request, a stuck rollout or a missing Event; the ServiceAccount is then
// refused what canaryd must never do. Both RBAC modes run, one after the
// other (a cluster-wide canaryd would also manage the other mode's app).
func TestChartRBACCarriesAFullRolloutAndRefusesTheRest(t *testing.T) {
	c := theCluster(t)
	bin := canarydBin(t)
	for _, namespaced := range []bool{true, false} {
		name := "cluster-wide"
		if namespaced {
			name = "namespaced"
		}
		t.Run(name, func(t *testing.T) { rbacScenario(t, c, bin, name, namespaced) })
	}
}

func rbacScenario(t *testing.T, c *cluster.Cluster, bin, mode string, namespaced bool) {
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(c.RESTConfig)
	dyn := dynamic.NewForConfigOrDie(c.RESTConfig)
	relNS, appNS, otherNS := "canaryd-"+mode, "shop-"+mode, "elsewhere-"+mode
	for _, ns := range []string{appNS, otherNS} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Given the chart installed, as a user would.
	install := []string{"install", "canaryd", chartDir(), "--kubeconfig", c.Kubeconfig, "--namespace", relNS,
		"--create-namespace", "--wait", "--timeout", "3m"}
	if namespaced {
		install = append(install, "--set", "watchNamespaces={"+appNS+"}")
	}
	out, err := helm(t, install...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wantNotes := "It watches every namespace."
	if namespaced {
		wantNotes = "It watches the namespaces " + appNS + " only."
	}
	for _, want := range []string{wantNotes, "helm test canaryd -n " + relNS, "kubectl -n <namespace> label deployment <name> canaryd.io/enabled=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("helm install's notes lack %q:\n%s", want, out)
		}
	}
	t.Cleanup(func() {
		if out, err := helm(t, "uninstall", "canaryd", "--kubeconfig", c.Kubeconfig, "--namespace", relNS, "--wait"); err != nil {
			t.Errorf("helm uninstall: %v\n%s", err, out)
		}
	})
	installed, err := admin.AppsV1().Deployments(relNS).Get(ctx, "canaryd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chartArgs := installed.Spec.Template.Spec.Containers[0].Args
	sa := installed.Spec.Template.Spec.ServiceAccountName
	tok, err := admin.CoreV1().ServiceAccounts(relNS).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", relNS, sa, err)
	}
	kubeconfig, err := c.KubeconfigForToken(mode, tok.Status.Token)
	if err != nil {
		t.Fatal(err)
	}

	// And an app, and canaryd running as the chart's ServiceAccount with the
	// chart's flags; only addresses and the step pace are the test's.
	a := newApp(t, admin, appNS)
	a.startAudit(dyn)
	local := []string{"--kubeconfig=" + kubeconfig, "--listen=127.0.0.1:0", "--prometheus-url=" + c.Prometheus.URL,
		"--scrape-interval=1s", "--analysis-period=1s", "--default-interval=" + interval.String(), "--default-min-requests=5",
		"--log-level=debug"}
	d := startDaemon(t, bin, filepath.Join(env.dir, mode+"-canaryd.log"), append(append([]string{}, chartArgs...), local...)...)
	a.adopted()

	// When a new image ships, then it goes through every step and is promoted.
	a.deploy("example.com/web:2.0")
	a.waitPhase(rollout.PhaseSucceeded, 3*time.Minute)
	waitFor(t, "split back at stable 100%", 30*time.Second, func() (bool, error) {
		w := a.audit.Weights()
		return w[len(w)-1] == 0, nil
	})
	if got, want := a.audit.Weights(), []int{-1, 0, 100, 200, 500, 1000, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("canary weights %v, want %v", got, want)
	}
	for _, v := range a.audit.Violations() {
		t.Errorf("invariant broken: %s", v)
	}
	// Events are sent by the recorder after the status write that decided
	// them, asynchronously: the last one may still be on its way.
	var reasons map[string]int
	deadline := time.Now().Add(15 * time.Second)
	for {
		reasons = a.eventReasons()
		if reasons["Promoted"] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, r := range []string{"Adopted", "RolloutStarted", "StepAdvanced", "Promoted"} {
		if reasons[r] == 0 {
			t.Errorf("no %s Event (events: %v): the recorder was refused or never ran", r, reasons)
		}
	}
	lease, err := admin.CoordinationV1().Leases(relNS).Get(ctx, installed.Name, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("the chart's Lease %s/%s is not held: %v %+v", relNS, installed.Name, err, lease)
	}
	checkMetricsCoverTheDashboard(t, d.metricsURL())
	if refused := regexp.MustCompile(`(?i)forbidden|cannot (list|watch|get|create|update|patch|delete)`).FindAllString(d.logText(), 5); len(refused) > 0 {
		t.Errorf("canaryd was refused requests as the chart's ServiceAccount: %v", refused)
	}

	// `canaryd check` (the helm test) with the same identity and flags passes.
	out, err = runDaemon(bin, append(append([]string{"check"}, chartArgs[1:]...), local...)...)
	if err != nil {
		t.Errorf("canaryd check as the chart's ServiceAccount: %v\n%s", err, out)
	}
	t.Logf("canaryd check as %s/%s:\n%s", relNS, sa, out)
	d.stop()

	// And what canaryd must never do is refused.
	cfg, err := cluster.RESTConfigFor(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as := kubernetes.NewForConfigOrDie(cfg)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: appNS}, StringData: map[string]string{"pw": "x"}}
	if _, err := admin.CoreV1().Secrets(appNS).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	refused := map[string]error{}
	_, refused["read a Secret in the watched namespace"] = as.CoreV1().Secrets(appNS).Get(ctx, "db-password", metav1.GetOptions{})
	_, refused["list Secrets anywhere"] = as.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	_, refused["list Pods"] = as.CoreV1().Pods(appNS).List(ctx, metav1.ListOptions{})
	_, refused["create a ConfigMap"] = as.CoreV1().ConfigMaps(appNS).Create(ctx,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, refused["read another Lease"] = as.CoordinationV1().Leases(relNS).Get(ctx, "kube-scheduler", metav1.GetOptions{})
	_, refused["list Nodes"] = as.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	refused["delete a Namespace"] = as.CoreV1().Namespaces().Delete(ctx, otherNS, metav1.DeleteOptions{})
	if namespaced {
		web, _ := admin.AppsV1().Deployments(appNS).Get(ctx, "web", metav1.GetOptions{})
		web.ObjectMeta = metav1.ObjectMeta{Name: "web-canary", Namespace: otherNS}
		_, refused["create a Deployment outside watchNamespaces"] = as.AppsV1().Deployments(otherNS).Create(ctx, web, metav1.CreateOptions{})
		_, refused["list Deployments cluster-wide"] = as.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		_, refused["create a Service outside watchNamespaces"] = as.CoreV1().Services(otherNS).Create(ctx,
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-stable"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	}
	names := make([]string, 0, len(refused))
	for n := range refused {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := refused[n]; !apierrors.IsForbidden(err) {
			t.Errorf("%s as the chart's ServiceAccount: want Forbidden, got %v", n, err)
		}
	}
	t.Logf("refused as %s/%s: %s", relNS, sa, strings.Join(names, "; "))
}

// checkMetricsCoverTheDashboard scrapes canaryd's /metrics and fails on any
// metric the chart's Grafana dashboard queries that canaryd does not expose.
func checkMetricsCoverTheDashboard(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(body), -1) {
		exposed[m[1]] = true
	}
	if !strings.Contains(string(body), "\ncanaryd_leader 1\n") {
		t.Errorf("the only canaryd does not report canaryd_leader 1")
	}
	raw, err := os.ReadFile(filepath.Join(chartDir(), "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	queried := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					for _, name := range regexp.MustCompile(`canaryd_[a-z_]+`).FindAllString(s, -1) {
						queried[strings.TrimSuffix(name, "_bucket")] = true
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(dash)
	if len(queried) < 10 {
		t.Fatalf("found only %d metrics in the dashboard: %v", len(queried), queried)
	}
	for name := range queried {
		if !exposed[name] {
			t.Errorf("the dashboard queries %s, which canaryd does not expose", name)
		}
	}
}

func ptr[T any](v T) *T { return &v }
