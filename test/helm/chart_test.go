package helm

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/canaryd/canaryd/analysis"
)

// wantRules are the rules of the default (cluster-wide) install, in the
// chart's order: what package kube calls, nothing more.
var wantRules = []string{
	"apps deployments: get,list,watch,patch,create,update,delete",
	"apps deployments/finalizers: update",
	"apps replicasets: list,watch",
	" services: list,watch,create,update,delete",
	"discovery.k8s.io endpointslices: list,watch",
	"split.smi-spec.io trafficsplits: list,watch,create,update,delete",
	"gateway.networking.k8s.io,policy.linkerd.io httproutes: get,list,watch,create,update,delete",
	"linkerd.io serviceprofiles: list,watch",
	" events: create,patch",
}

var wantLeaseRules = []string{"coordination.k8s.io leases: create", "coordination.k8s.io leases: get,update (canaryd)"}

func TestChartLintsAndRendersEveryVariation(t *testing.T) {
	for _, v := range variations {
		t.Run(v.name, func(t *testing.T) {
			if out, err := helm(t, append([]string{"lint", "--strict", chartDir(), "--namespace", releaseNS,
				"--kube-version", kubeVersion}, v.args()...)...); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			objs := render(t, v)
			checkEveryInstall(t, v, objs)
			if check, ok := variationChecks[v.name]; ok {
				check(t, objs)
			}
		})
	}
}

// checkEveryInstall holds for every variation: the pod's hardening, its
// probes, the helm test Pod mirroring the Deployment, files the flags name
// being mounted, and RBAC that never reaches Secrets, Pods or ConfigMaps.
func checkEveryInstall(t *testing.T, v variation, objs []*unstructured.Unstructured) {
	t.Helper()
	d := deploymentOf(t, objs)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want non-root with a uid and seccomp RuntimeDefault", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want read-only root, no privilege escalation, drop ALL", sc)
	}
	leader := slices.Contains(c.Args, "--leader-elect=true")
	wantReady := "/readyz"
	if leader {
		wantReady = "/healthz" // a standby's /readyz waits for the lease (see the template)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != wantReady {
		t.Errorf("probes: liveness %+v readiness %+v; want /healthz and %s", c.LivenessProbe, c.ReadinessProbe, wantReady)
	}
	if c.Args[0] != "run" {
		t.Errorf("args %v: want the run subcommand first", c.Args)
	}
	port, _ := flagValue(c.Args, "listen")
	if len(c.Ports) != 1 || c.Ports[0].Name != "http-metrics" || port != ":"+strconv.Itoa(int(c.Ports[0].ContainerPort)) {
		t.Errorf("--listen=%s but container ports %+v", port, c.Ports)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	volumes := map[string]bool{}
	for _, vol := range pod.Volumes {
		volumes[vol.Name] = true
	}
	for _, name := range mounts {
		if !volumes[name] {
			t.Errorf("volumeMount %s has no volume", name)
		}
	}
	for _, f := range []string{"checks-file", "prometheus-bearer-token-file", "prometheus-password-file", "prometheus-ca-file"} {
		if p, ok := flagValue(c.Args, f); ok && !underAny(p, mounts) {
			t.Errorf("--%s=%s is not under any volumeMount %v", f, p, mounts)
		}
	}
	if u := find(objs, "Pod", "canaryd-check"); u == nil {
		t.Error("no helm test Pod canaryd-check")
	} else {
		p := typed[corev1.Pod](t, u)
		if p.Annotations["helm.sh/hook"] != "test" || p.Spec.ServiceAccountName != pod.ServiceAccountName ||
			!reflect.DeepEqual(p.Spec.Containers[0].Args, append([]string{"check"}, c.Args[1:]...)) ||
			!reflect.DeepEqual(p.Spec.Volumes, pod.Volumes) {
			t.Errorf("the helm test Pod does not run `canaryd check` with the Deployment's flags, identity and files: %+v", p.Spec)
		}
	}
	for role, rules := range rulesOf(t, objs) {
		for _, r := range rules {
			for _, res := range r.Resources {
				if res == "*" || res == "secrets" || res == "pods" || res == "configmaps" || slices.Contains(r.Verbs, "*") || slices.Contains(r.APIGroups, "*") {
					t.Errorf("%s grants %s", role, ruleString(r))
				}
			}
		}
	}
	for _, o := range objs {
		ns := o.GetNamespace()
		switch {
		case o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding":
			if ns != "" {
				t.Errorf("%s %s has a namespace", o.GetKind(), o.GetName())
			}
		case o.GetKind() == "AuthorizationPolicy" || o.GetKind() == "Role" || o.GetKind() == "RoleBinding":
		case ns != releaseNS:
			t.Errorf("%s %s is in namespace %q, not the release's", o.GetKind(), o.GetName(), ns)
		}
	}
}

func underAny(path string, mounts map[string]string) bool {
	for m := range mounts {
		if strings.HasPrefix(path, m+"/") {
			return true
		}
	}
	return false
}

func rulesAsStrings(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, ruleString(r))
	}
	return out
}

var variationChecks = map[string]func(t *testing.T, objs []*unstructured.Unstructured){
	"defaults": func(t *testing.T, objs []*unstructured.Unstructured) {
		want := []string{"ClusterRole//canaryd", "ClusterRoleBinding//canaryd", "Deployment/canaryd/canaryd",
			"Pod/canaryd/canaryd-check", "PodDisruptionBudget/canaryd/canaryd", "Role/canaryd/canaryd-leader-election",
			"RoleBinding/canaryd/canaryd-leader-election", "Service/canaryd/canaryd-metrics", "ServiceAccount/canaryd/canaryd"}
		if got := kinds(objs); !reflect.DeepEqual(got, want) {
			t.Errorf("objects:\n got %v\nwant %v", got, want)
		}
		rules := rulesOf(t, objs)
		if got := rulesAsStrings(rules["ClusterRole/canaryd"]); !reflect.DeepEqual(got, wantRules) {
			t.Errorf("ClusterRole rules:\n got %q\nwant %q", got, wantRules)
		}
		if got := rulesAsStrings(rules["Role/canaryd/canaryd-leader-election"]); !reflect.DeepEqual(got, wantLeaseRules) {
			t.Errorf("lease Role rules:\n got %q\nwant %q", got, wantLeaseRules)
		}
		d := deploymentOf(t, objs)
		if *d.Spec.Replicas != 2 || d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
			t.Errorf("want 2 replicas rolled with a surge and none unavailable: %+v", d.Spec.Strategy)
		}
		args := d.Spec.Template.Spec.Containers[0].Args
		for _, f := range []string{"--leader-elect=true", "--leader-election-namespace=canaryd", "--leader-election-id=canaryd"} {
			if !slices.Contains(args, f) {
				t.Errorf("args lack %s: %v", f, args)
			}
		}
		if _, ok := flagValue(args, "namespaces"); ok {
			t.Errorf("cluster-wide install passes --namespaces: %v", args)
		}
	},
	"namespaced": func(t *testing.T, objs []*unstructured.Unstructured) {
		if find(objs, "ClusterRole", "") != nil || find(objs, "ClusterRoleBinding", "") != nil {
			t.Errorf("namespaced mode renders cluster-scoped RBAC: %v", kinds(objs))
		}
		rules := rulesOf(t, objs)
		for _, ns := range []string{"team-a", "team-b"} {
			if got := rulesAsStrings(rules["Role/"+ns+"/canaryd"]); !reflect.DeepEqual(got, wantRules) {
				t.Errorf("Role in %s: %q", ns, got)
			}
			var rb *rbacv1.RoleBinding
			for _, o := range objs {
				if o.GetKind() == "RoleBinding" && o.GetNamespace() == ns {
					rb = typed[rbacv1.RoleBinding](t, o)
				}
			}
			if rb == nil || rb.RoleRef.Kind != "Role" || len(rb.Subjects) != 1 || rb.Subjects[0].Namespace != releaseNS || rb.Subjects[0].Name != "canaryd" {
				t.Errorf("RoleBinding in %s: %+v", ns, rb)
			}
		}
		if v, _ := flagValue(deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args, "namespaces"); v != "team-a,team-b" {
			t.Errorf("--namespaces=%q, want team-a,team-b", v)
		}
	},
	"linkerd": func(t *testing.T, objs []*unstructured.Unstructured) {
		if deploymentOf(t, objs).Spec.Template.Annotations["linkerd.io/inject"] != "enabled" {
			t.Error("pods are not annotated for injection")
		}
		ap := find(objs, "AuthorizationPolicy", "")
		if ap == nil || ap.GetNamespace() != "linkerd-viz" {
			t.Fatalf("no AuthorizationPolicy in linkerd-viz: %v", kinds(objs))
		}
		target, _, _ := unstructured.NestedStringMap(ap.Object, "spec", "targetRef")
		refs, _, _ := unstructured.NestedSlice(ap.Object, "spec", "requiredAuthenticationRefs")
		want := []any{map[string]any{"kind": "ServiceAccount", "name": "canaryd", "namespace": releaseNS}}
		if target["kind"] != "Server" || target["name"] != "prometheus-admin" || !reflect.DeepEqual(refs, want) {
			t.Errorf("AuthorizationPolicy targets %v for %v", target, refs)
		}
	},
	"networkpolicy": func(t *testing.T, objs []*unstructured.Unstructured) {
		np := find(objs, "NetworkPolicy", "canaryd")
		if np == nil {
			t.Fatal("no NetworkPolicy")
		}
		b, _ := json.Marshal(np.Object["spec"])
		for _, want := range []string{`"port":53`, `"port":6443`, `"cidr":"192.0.2.10/32"`, `"port":9090`,
			`"component":"prometheus"`, `"port":8086`, `"kubernetes.io/metadata.name":"monitoring"`, `"port":"http-metrics"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("NetworkPolicy lacks %s: %s", want, b)
			}
		}
	},
	"monitoring": func(t *testing.T, objs []*unstructured.Unstructured) {
		svc := typed[corev1.Service](t, find(objs, "Service", "canaryd-metrics"))
		sm, pm := find(objs, "ServiceMonitor", "canaryd"), find(objs, "PodMonitor", "canaryd")
		if sm == nil || pm == nil {
			t.Fatalf("monitors missing: %v", kinds(objs))
		}
		smSel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for k, v := range smSel {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, which the metrics Service lacks", k, v)
			}
		}
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != svc.Spec.Ports[0].Name {
			t.Errorf("ServiceMonitor endpoints %v do not name the Service's port %s", eps, svc.Spec.Ports[0].Name)
		}
		if sm.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor labels %v lack the extra label", sm.GetLabels())
		}
		cm := find(objs, "ConfigMap", "canaryd-dashboard")
		if cm == nil || cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Fatalf("no dashboard ConfigMap with the sidecar's label: %v", kinds(objs))
		}
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		var dash struct {
			UID    string            `json:"uid"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal([]byte(data["canaryd.json"]), &dash); err != nil || dash.UID != "canaryd" || len(dash.Panels) < 10 {
			t.Errorf("dashboard JSON: %v, uid %q, %d panels", err, dash.UID, len(dash.Panels))
		}
	},
	"single": func(t *testing.T, objs []*unstructured.Unstructured) {
		d := deploymentOf(t, objs)
		if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != "Recreate" {
			t.Errorf("a single unelected replica must be recreated, never overlap: %+v", d.Spec.Strategy)
		}
		if find(objs, "PodDisruptionBudget", "") != nil || find(objs, "Role", "canaryd-leader-election") != nil {
			t.Errorf("single replica renders a PDB or a lease Role: %v", kinds(objs))
		}
		if len(d.Spec.Template.Spec.Containers[0].Env) != 0 {
			t.Errorf("GOMEMLIMIT without a memory limit: %+v", d.Spec.Template.Spec.Containers[0].Env)
		}
	},
	"everything": func(t *testing.T, objs []*unstructured.Unstructured) {
		cm := find(objs, "ConfigMap", "canaryd-checks")
		if cm == nil {
			t.Fatalf("no checks ConfigMap: %v", kinds(objs))
		}
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		checks, err := analysis.ParseChecks([]byte(data["checks.yaml"]))
		if err != nil || len(checks) != 2 || checks[0].Name != "canary-5xx" || checks[1].Name != "queue-depth" {
			t.Errorf("canaryd's own parser on the rendered checks: %v, %+v\n%s", err, checks, data["checks.yaml"])
		}
		args := deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args
		for _, want := range []string{"--default-min-requests=1000000", "--default-steps=5,10,25,50", "--default-min-success-rate=99.5",
			"--default-window=0 9 * * 1-5 8h", "--prometheus-headers=X-Scope-OrgID=platform", "--smi-version=v1alpha2",
			"--leader-election-id=canaryd-leader", "--judge-alpha=0.005", "--checks-file=/etc/canaryd/checks/checks.yaml",
			"--httproute-version=policy.linkerd.io/v1beta3", "--httproute-require-accepted=true", "--hook-timeout=3s",
			"--notify-config=/etc/canaryd/notify-config/notify.yaml"} {
			if !slices.Contains(args, want) {
				t.Errorf("args lack %s: %v", want, args)
			}
		}
		rules := rulesOf(t, objs)
		if got := rulesAsStrings(rules["Role/canaryd/canaryd-leader-election"]); !slices.Contains(got, "coordination.k8s.io leases: get,update (canaryd-leader)") {
			t.Errorf("the lease Role does not follow leaderElection.leaseName: %q", got)
		}
		if a := deploymentOf(t, objs).Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("podAntiAffinity=hard: %+v", a)
		}
	},
}
