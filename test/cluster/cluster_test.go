package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// shared is the one cluster (with Prometheus) the tests of this package share; see TestMain.
var (
	shared     *Cluster
	skipReason string
)

// TestMain starts one cluster for the package. Without the binaries the tests skip, unless CI is set: in CI a
// missing binary means the pipeline forgot test/bootstrap.sh, which must fail loudly.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if _, err := FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			fmt.Fprintf(os.Stderr, "FAIL: CI is set and the control-plane binaries are missing: %v\n", err)
			return 1
		}
		skipReason = fmt.Sprintf("control-plane binaries missing (run test/bootstrap.sh; CI unset, so skipping): %v", err)
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	c, err := Start(ctx, Options{Prometheus: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: start shared cluster: %v\n", err)
		return 1
	}
	fmt.Printf("shared cluster up in %s (dir %s)\n", time.Since(t0).Round(10*time.Millisecond), c.Dir)
	shared = c
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stop shared cluster: %v\n", err)
		return 1
	}
	return code
}

// need returns the shared cluster, or skips the test (see TestMain).
func need(t *testing.T) *Cluster {
	t.Helper()
	if shared == nil {
		t.Skip(skipReason)
	}
	return shared
}

func clientset(t *testing.T, c *Cluster) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// eventually retries check until it succeeds or timeout passes, then fails with the last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func int32p(i int32) *int32 { return &i }

func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: int32p(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.invalid/app:v1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
}

func TestDeploymentBecomesAvailableWithRunningReadyPods(t *testing.T) {
	c := need(t)
	cs := clientset(t, c)
	ns := namespace(t, cs)
	ctx := context.Background()

	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	eventually(t, 30*time.Second, "deployment web Available with 3 replicas", func(ctx context.Context) error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && d.Status.AvailableReplicas == 3 {
				return nil
			}
		}
		return fmt.Errorf("status %+v", d.Status)
	})

	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("got %d pods, want 3", len(pods.Items))
	}
	_, podNet, _ := net.ParseCIDR(podCIDR)
	seen := map[string]string{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s phase %s, want Running", p.Name, p.Status.Phase)
		}
		if !podReady(&p) {
			t.Errorf("pod %s not Ready: %+v", p.Name, p.Status.Conditions)
		}
		ip := net.ParseIP(p.Status.PodIP)
		if ip == nil || !podNet.Contains(ip) {
			t.Errorf("pod %s IP %q not in %s", p.Name, p.Status.PodIP, podCIDR)
		}
		if other, dup := seen[p.Status.PodIP]; dup {
			t.Errorf("pods %s and %s share IP %s", p.Name, other, p.Status.PodIP)
		}
		seen[p.Status.PodIP] = p.Name
		if p.Spec.NodeName == "" {
			t.Errorf("pod %s not scheduled", p.Name)
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestServiceEndpointSliceFillsWithReadyPodEndpoints(t *testing.T) {
	c := need(t)
	cs := clientset(t, c)
	ns := namespace(t, cs)
	ctx := context.Background()

	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("api", 2), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "api"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}

	var got []string
	eventually(t, 30*time.Second, "EndpointSlice of api with 2 ready endpoints", func(ctx context.Context) error {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=api"})
		if err != nil {
			return err
		}
		got = nil
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					got = append(got, e.Addresses...)
				}
			}
		}
		if len(got) != 2 {
			return fmt.Errorf("ready addresses %v", got)
		}
		return nil
	})

	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	var want []string
	for _, p := range pods.Items {
		want = append(want, p.Status.PodIP)
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("endpoint addresses %v, want the pod IPs %v", got, want)
	}
}

func TestMeshCRDsAreServed(t *testing.T) {
	c := need(t)
	cs := clientset(t, c)
	for gv, resource := range map[string]string{
		"split.smi-spec.io/v1alpha1":        "trafficsplits",
		"split.smi-spec.io/v1alpha2":        "trafficsplits",
		"gateway.networking.k8s.io/v1":      "httproutes",
		"policy.linkerd.io/v1beta3":         "httproutes",
		"policy.linkerd.io/v1alpha1":        "authorizationpolicies",
		"linkerd.io/v1alpha2":               "serviceprofiles",
		"policy.linkerd.io/v1beta1":         "serverauthorizations",
		"gateway.networking.k8s.io/v1beta1": "httproutes",
	} {
		list, err := cs.Discovery().ServerResourcesForGroupVersion(gv)
		if err != nil {
			t.Errorf("discovery of %s: %v", gv, err)
			continue
		}
		found := false
		for _, r := range list.APIResources {
			found = found || r.Name == resource
		}
		if !found {
			t.Errorf("%s does not serve %s", gv, resource)
		}
	}

	// Serving in discovery is not enough: the objects canaryd writes must be accepted by the schemas.
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	ns := namespace(t, cs)
	split := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "web"},
		"spec": map[string]any{"service": "web", "backends": []any{
			map[string]any{"service": "web-stable", "weight": "900m"},
			map[string]any{"service": "web-canary", "weight": "100m"},
		}},
	}}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "web"},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "core", "kind": "Service", "name": "web", "port": int64(80)}},
			"rules": []any{map[string]any{"backendRefs": []any{
				map[string]any{"name": "web-stable", "port": int64(80), "weight": int64(90)},
				map[string]any{"name": "web-canary", "port": int64(80), "weight": int64(10)},
			}}},
		},
	}}
	for gvr, obj := range map[schema.GroupVersionResource]*unstructured.Unstructured{
		{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"}: split,
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}:  route,
	} {
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
			t.Errorf("create %s: %v", gvr.Resource, err)
		}
	}
	// A schema violation must be rejected, or the check above proves nothing about validation.
	bad := route.DeepCopy()
	bad.SetName("bad")
	_ = unstructured.SetNestedField(bad.Object, "not-a-list", "spec", "parentRefs")
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}).
		Namespace(ns).Create(context.Background(), bad, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("HTTPRoute with parentRefs as a string: got %v, want Invalid", err)
	}
}

func TestKubeconfigForActsAsThatUserUnderRBAC(t *testing.T) {
	c := need(t)
	cs := clientset(t, c)
	ns := namespace(t, cs)
	ctx := context.Background()

	path, err := c.KubeconfigFor("jane", []string{"app-team"})
	if err != nil {
		t.Fatalf("KubeconfigFor: %v", err)
	}
	cfg, err := RESTConfigFor(path)
	if err != nil {
		t.Fatal(err)
	}
	jane, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jane.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods without a binding: got %v, want Forbidden", err)
	}
	// Bind the group, not the user, so that the certificate's O field is proven to reach the authorizer.
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "app-team-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "app-team"}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create rolebinding: %v", err)
	}
	eventually(t, 10*time.Second, "jane may list pods", func(ctx context.Context) error {
		_, err := jane.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err
	})
	if _, err := jane.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods in another namespace: got %v, want Forbidden", err)
	}
	again, err := c.KubeconfigFor("jane", []string{"app-team"})
	if err != nil || again != path {
		t.Errorf("second KubeconfigFor = %q, %v; want the same file %q", again, err, path)
	}
}

func TestStartRejectsMissingCRDFileBeforeStartingAnything(t *testing.T) {
	need(t)
	dir := t.TempDir()
	_, err := Start(context.Background(), Options{Dir: dir, CRDs: []string{dir + "/nope.yaml"}})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start with a missing CRD file: got %v, want a not-exist error", err)
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}
