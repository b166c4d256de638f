package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const releaseNS = "canaryd"

// variation is one set of values the chart must render well.
type variation struct {
	name string
	set  []string // helm --set arguments
	// setString are --set-string arguments (values that must stay strings).
	setString []string
}

// variations are the values combinations every proof runs over: the
// defaults and what a platform team turns on.
var variations = []variation{
	{name: "defaults"},
	{name: "namespaced", set: []string{"watchNamespaces={team-a,team-b}"}},
	{name: "linkerd", set: []string{"linkerd.inject=true"}},
	{name: "networkpolicy", set: []string{"networkPolicy.enabled=true", "networkPolicy.apiServer.cidrs={192.0.2.10/32}",
		"networkPolicy.prometheus.podSelector.matchLabels.component=prometheus", "linkerd.inject=true",
		"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"}},
	{name: "monitoring", set: []string{"metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true",
		"dashboard.enabled=true", "metrics.serviceMonitor.labels.release=kube-prometheus-stack"}},
	{name: "single", set: []string{"replicaCount=1", "leaderElection.enabled=false", "resources=null"}},
	{name: "everything", set: []string{
		"analysis.checks[0].name=canary-5xx", "analysis.checks[0].max=0.5",
		"analysis.checks[1].name=queue-depth", "analysis.checks[1].min=0", "analysis.checks[1].max=100",
		"prometheus.bearerToken.existingSecret=prom-token", "prometheus.tls.caConfigMap=prom-ca",
		"defaults.steps=5\\,10\\,25\\,50", "defaults.minRequests=1000000", "defaults.minSuccessRate=99.5",
		"defaults.manualPromotion=true", "defaults.router=smi", "smiVersion=v1alpha2",
		"httpRoute.version=policy.linkerd.io/v1beta3", "httpRoute.requireAccepted=true", "hookTimeout=3s",
		"notifications.existingSecret=hooks", "notifications.receivers[0].name=chat", "notifications.receivers[0].type=slack",
		"notifications.receivers[0].urlKey=slack-url", "notifications.receivers[1].name=audit",
		"notifications.receivers[1].type=webhook", "notifications.receivers[1].urlKey=audit-url",
		"notifications.receivers[1].tokenKey=audit-token", "notifications.receivers[1].events={started,promoted}",
		"extraArgs={--judge-alpha=0.005}", "podAntiAffinity=hard", "leaderElection.leaseName=canaryd-leader",
	}, setString: []string{
		`analysis.checks[0].query=sum(rate(response_total{namespace="{{.namespace}}"\,deployment="{{.canary}}"\,classification="failure"}[{{.interval}}])) or vector(0)`,
		`analysis.checks[1].query=max(queue_depth{namespace="{{.namespace}}"\,deployment="{{.canary}}"})`,
		"prometheus.headers.X-Scope-OrgID=platform", "defaults.window=0 9 * * 1-5 8h",
	}},
	{name: "basicauth", set: []string{"prometheus.basicAuth.username=canaryd", "prometheus.basicAuth.existingSecret=prom-password",
		"prometheus.tls.caSecret=prom-ca", "prometheus.url=https://prometheus.monitoring.svc:9090"}},
}

func (v variation) args() []string {
	var out []string
	for _, s := range v.set {
		out = append(out, "--set", s)
	}
	for _, s := range v.setString {
		out = append(out, "--set-string", s)
	}
	return out
}

// render runs helm template for the variation and decodes every document.
func render(t *testing.T, v variation) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, append([]string{"template", "canaryd", chartDir(), "--namespace", releaseNS,
		"--kube-version", kubeVersion}, v.args()...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll([]byte(out))
	if err != nil {
		t.Fatalf("%s: the rendered YAML does not decode: %v", v.name, err)
	}
	return objs
}

func decodeAll(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
}

// find returns the object of kind (and name, if not empty), or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// typed converts a rendered object to its Go type, refusing unknown fields,
// so a misspelt field in a template fails here too.
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &out
}

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u := find(objs, "Deployment", "canaryd")
	if u == nil {
		t.Fatalf("no Deployment canaryd among %v", kinds(objs))
	}
	return typed[appsv1.Deployment](t, u)
}

// rulesOf collects every RBAC rule the chart grants, by the Role or
// ClusterRole that grants it.
func rulesOf(t *testing.T, objs []*unstructured.Unstructured) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			out["ClusterRole/"+o.GetName()] = typed[rbacv1.ClusterRole](t, o).Rules
		case "Role":
			out["Role/"+o.GetNamespace()+"/"+o.GetName()] = typed[rbacv1.Role](t, o).Rules
		}
	}
	return out
}

func ruleString(r rbacv1.PolicyRule) string {
	s := fmt.Sprintf("%s %s: %s", strings.Join(r.APIGroups, ","), strings.Join(r.Resources, ","), strings.Join(r.Verbs, ","))
	if len(r.ResourceNames) > 0 {
		s += " (" + strings.Join(r.ResourceNames, ",") + ")"
	}
	return s
}

// containerArgs returns canaryd's container args in the pod spec.
func containerArgs(t *testing.T, spec corev1.PodSpec) []string {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Containers))
	}
	return spec.Containers[0].Args
}

func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}
