package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/checkup"
	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/cluster"
)

// `canaryd check` and `kubectl canary check` against the real control plane
// and Prometheus: a healthy setup, then each way it can be broken.

// check runs the built canaryd's check subcommand.
func check(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.canaryd, append([]string{"check", "--scrape-interval", "1s"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	res := cliResult{}
	var ee *exec.ExitError
	if err := cmd.Run(); errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("canaryd check: %v", err)
	}
	res.out, res.err = out.String(), errOut.String()
	t.Logf("$ canaryd check %s → exit %d\n%s%s", strings.Join(args, " "), res.code, res.out, res.err)
	return res
}

// lines returns the report lines that start with sym (✔, ‼, ✘).
func (r cliResult) lines(sym string) []string {
	var out []string
	for _, l := range strings.Split(r.out, "\n") {
		if strings.HasPrefix(l, sym+" ") {
			out = append(out, l)
		}
	}
	return out
}

// section returns the lines of one category of the report.
func (r cliResult) section(cat string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(r.out, "\n") {
		switch {
		case l == cat:
			in = true
		case in && l == "":
			return out
		case in && !strings.HasPrefix(l, "---"):
			out = append(out, l)
		}
	}
	return out
}

// leastPrivilege is a kubeconfig for user holding, in namespace ns, exactly
// the permissions checkup.Permissions says canaryd needs, minus the verbs
// listed in drop ("patch events").
func leastPrivilege(t *testing.T, ns, user string, drop map[string]bool) string {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}}
	for _, p := range checkup.Permissions(checkup.Config{Namespaces: []string{ns}}) {
		if p.Namespace != "" {
			continue // the Lease: no leader election here
		}
		var verbs []string
		for _, v := range p.Verbs {
			if !drop[v+" "+p.Name()] {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{p.Group}, Resources: []string{p.Resource}, Verbs: verbs})
		}
	}
	ctx := context.Background()
	if _, err := env.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterRole %s: %v", user, err)
	}
	t.Cleanup(func() {
		_ = env.client.RbacV1().ClusterRoles().Delete(context.Background(), user, metav1.DeleteOptions{})
	})
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := env.client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating RoleBinding %s: %v", user, err)
	}
	kc, err := env.cluster.KubeconfigFor(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// The local cluster has no Linkerd injector, so a healthy setup reports
// injection as ‼ and nothing as ✘ (exit 0); with the namespace annotated,
// every line is ✔. Prometheus down is then the one ✘.
func TestCheckPassesOnAHealthySetupAndFailsWhenPrometheusIsDown(t *testing.T) {
	f := given(t, "e2e-check").app(nil, healthy).audit().canaryd().adopted()
	args := []string{"--kubeconfig", env.cluster.Kubeconfig, "--namespaces", f.ns, "--prometheus-url", env.cluster.Prometheus.URL}

	var res cliResult
	f.waitFor("the app's proxy metrics in Prometheus", time.Minute, func() (bool, error) {
		res = check(t, args...)
		return res.code == 0 && strings.Contains(res.out, "✔ Prometheus holds inbound proxy metrics of every opted-in Deployment (1)"), nil
	})
	if ws := res.lines("‼"); len(ws) != 1 || ws[0] != "‼ namespace "+f.ns+" has no linkerd.io/inject annotation: web will not be meshed" {
		t.Errorf("want exactly the injection warning, got %q", ws)
	}
	for _, want := range []string{"✔ can reach the API server", "✔ 1 Deployment opted in across 1 namespace",
		"✔ can get, list, watch, create, update, patch, delete deployments.apps in namespace " + f.ns,
		"✔ TrafficSplit split.smi-spec.io/v1alpha1 is served (used by the cluster default)",
		"✔ Prometheus at " + env.cluster.Prometheus.URL + " answers canaryd's queries",
		"✔ Prometheus labels its scrape targets by deployment and pod_template_hash",
		"Status check results are ✔ with 1 warning"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if len(res.lines("✘")) != 0 {
		t.Errorf("a healthy setup has no ✘: %q", res.lines("✘"))
	}
	res.fits(t)

	kubectl := f.cli("check", "--prometheus-url", env.cluster.Prometheus.URL)
	kubectl.expect(t, 0, "‼ namespace "+f.ns+" has no linkerd.io/inject", "Status check results are ✔ with 1 warning")

	patch := []byte(`{"metadata":{"annotations":{"linkerd.io/inject":"enabled"}}}`)
	if _, err := env.client.CoreV1().Namespaces().Patch(f.ctx, f.ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res = check(t, args...)
	res.expect(t, 0, "✔ namespace "+f.ns+" has linkerd.io/inject=enabled", "Status check results are ✔\n")
	if n := len(res.lines("‼")) + len(res.lines("✘")); n != 0 {
		t.Errorf("with injection on, every line is ✔; got %d others", n)
	}

	down := deadLoopbackURL(t)
	res = check(t, "--kubeconfig", env.cluster.Kubeconfig, "--namespaces", f.ns, "--prometheus-url", down)
	res.expect(t, 1, "✘ cannot query Prometheus at "+down, "connection refused", "hint: check --prometheus-url")
	if fails := res.lines("✘"); len(fails) != 1 {
		t.Errorf("Prometheus down is the one ✘: %q", fails)
	}
	f.cli("check", "--prometheus-url", down).expect(t, 1, "✘ cannot query Prometheus at "+down)
}

// deadLoopbackURL is an http URL on a loopback port nobody listens on: a
// Prometheus that is down.
func deadLoopbackURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// RBAC is reviewed verb by verb for the identity in use: one with no
// rights fails every line; one with exactly checkup.Permissions passes;
// one missing a single verb fails exactly that line. A ServiceProfile on
// the apex of an HTTPRoute-routed Deployment fails its own line.
func TestCheckNamesMissingPermissionsAndOverridingServiceProfiles(t *testing.T) {
	f := given(t, "e2e-check-rbac")
	apiDeployment(t, f)
	prom := "--prometheus-url=" + env.cluster.Prometheus.URL

	jane, err := env.cluster.KubeconfigFor("jane", nil)
	if err != nil {
		t.Fatal(err)
	}
	res := check(t, "--kubeconfig", jane, "--namespaces", f.ns, prom)
	res.expect(t, 1, "✘ cannot list opted-in Deployments", "✘ cannot get, list, watch, create, update, patch, delete deployments.apps in namespace "+f.ns)
	for _, l := range res.section("canaryd-rbac") {
		if strings.HasPrefix(l, "✔") {
			t.Errorf("jane has no rights, yet: %s", l)
		}
	}

	ok := check(t, "--kubeconfig", leastPrivilege(t, f.ns, "canaryd-"+f.ns, nil), "--namespaces", f.ns, prom)
	rbac := ok.section("canaryd-rbac")
	if len(rbac) < 8 {
		t.Fatalf("RBAC section %q", rbac)
	}
	for _, l := range rbac {
		if !strings.HasPrefix(l, "✔ can ") && !strings.HasPrefix(l, "  ") {
			t.Errorf("with exactly the permissions checkup asks for: %s", l)
		}
	}

	minus := leastPrivilege(t, f.ns, "canaryd-no-patch-events", map[string]bool{"patch events": true})
	short := check(t, "--kubeconfig", minus, "--namespaces", f.ns, prom)
	var fails []string
	for _, l := range short.section("canaryd-rbac") {
		if strings.HasPrefix(l, "✘") {
			fails = append(fails, l)
		}
	}
	if len(fails) != 1 || fails[0] != "✘ cannot patch events in namespace "+f.ns {
		t.Errorf("want exactly the events line failed: %q", fails)
	}
	short.expect(t, 1, `hint: grant verbs [create, patch] on resource "events" of apiGroup "" to canaryd's ServiceAccount`,
		"canaryd uses them for: every decision is an Event")

	admin := check(t, "--kubeconfig", env.cluster.Kubeconfig, "--namespaces", f.ns, prom)
	admin.expect(t, 1, "✘ ServiceProfile "+f.ns+"/api."+f.ns+".svc.cluster.local (with routes) on the apex Service of "+f.ns+"/api overrides its HTTPRoute split")
	admin.fits(t)
}

// apiDeployment creates an opted-in Deployment "api" routed by HTTPRoute
// whose apex Service has a ServiceProfile with routes. No canaryd runs in
// this scenario: only the check looks at it.
func apiDeployment(t *testing.T, f *fixture) {
	t.Helper()
	labels := map[string]string{"app": "api"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: f.ns, Labels: map[string]string{rollout.LabelEnabled: "true"},
			Annotations: map[string]string{rollout.KeyRouter: rollout.RouterHTTPRoute}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "example.com/api:1"}}}},
		},
	}
	if _, err := env.client.AppsV1().Deployments(f.ns).Create(f.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: f.ns},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := env.client.CoreV1().Services(f.ns).Create(f.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
		"metadata": map[string]any{"name": "api." + f.ns + ".svc.cluster.local", "namespace": f.ns},
		"spec":     map[string]any{"routes": []any{map[string]any{"name": "GET /", "condition": map[string]any{"method": "GET", "pathRegex": "/"}}}},
	}}
	gvr := schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}
	if _, err := env.dyn.Resource(gvr).Namespace(f.ns).Create(f.ctx, sp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// In a cluster of its own (the shared one must keep its CRDs), the
// TrafficSplit CRD is deleted: the router canaryd uses by default is gone.
func TestCheckFailsWithoutTheTrafficSplitCRD(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	t.Parallel()
	ctx := context.Background()
	cl, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(env.dir, "cluster-no-smi"), Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	dyn, err := dynamic.NewForConfig(cl.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if err := dyn.Resource(crds).Delete(ctx, "trafficsplits.split.smi-spec.io", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the TrafficSplit CRD: %v", err)
	}
	client, err := kubernetes.NewForConfig(cl.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := client.Discovery().ServerResourcesForGroupVersion("split.smi-spec.io/v1alpha1")
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("split.smi-spec.io/v1alpha1 still served a minute after its CRD was deleted (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	res := check(t, "--kubeconfig", cl.Kubeconfig, "--prometheus-url", env.cluster.Prometheus.URL)
	res.expect(t, 1, `✘ TrafficSplit split.smi-spec.io/v1alpha1 is not served, but router "smi" is in use (used by the cluster default)`,
		"hint: install linkerd-smi", "✔ HTTPRoute gateway.networking.k8s.io/v1 is served")
	for _, l := range res.section("canaryd-rbac") {
		if strings.Contains(l, "trafficsplits") {
			t.Errorf("a resource that is not served needs no permission: %s", l)
		}
	}
	for _, l := range res.section("routing-resources") {
		if strings.HasPrefix(l, "✘") && !strings.Contains(l, "TrafficSplit") {
			t.Errorf("only the TrafficSplit line fails: %s", l)
		}
	}

	// kubectl canary check says the same.
	bin := kubectlCanary(t)
	out, err := exec.Command(bin, "check", "--kubeconfig", cl.Kubeconfig).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), `✘ TrafficSplit split.smi-spec.io/v1alpha1 is not served`) {
		t.Errorf("kubectl canary check: %v\n%s", err, out)
	}
}
