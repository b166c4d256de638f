package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestChartRefusesBadValuesNamingTheKey(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       []string
		setString []string
		want      string
	}{
		{"an unknown on-inconclusive", []string{"defaults.onInconclusive=maybe"}, nil, "'/defaults/onInconclusive': value must be one of 'hold', 'rollback'"},
		{"a misspelt key", []string{"replicas=2"}, nil, "additional properties 'replicas' not allowed"},
		{"a misspelt nested key", []string{"prometheus.urll=http://p:9090"}, nil, "'/prometheus': additional properties 'urll' not allowed"},
		{"a namespace that is no name", []string{"watchNamespaces={Team_A}"}, nil, "'/watchNamespaces/0'"},
		{"a Prometheus URL without a scheme", []string{"prometheus.url=prometheus:9090"}, nil, "'/prometheus/url'"},
		{"an interval in words", []string{"defaults.interval=1minute"}, nil, "'/defaults/interval'"},
		{"steps in words", []string{"defaults.steps=ten"}, nil, "'/defaults/steps'"},
		{"a success rate above 100", []string{"defaults.minSuccessRate=101"}, nil, "'/defaults/minSuccessRate'"},
		{"a check without bounds", []string{"analysis.checks[0].name=x"}, []string{"analysis.checks[0].query=up"}, "'/analysis/checks/0'"},
		{"a header value with a comma", nil, []string{"prometheus.headers.X-Org=a\\,b"}, "'/prometheus/headers/X-Org'"},
		{"a bad digest", []string{"image.digest=sha256:zz"}, nil, "'/image/digest'"},
		{"a privileged port", []string{"metrics.port=80"}, nil, "'/metrics/port'"},
		{"no API requests allowed", []string{"kubeAPI.qps=0"}, nil, "'/kubeAPI/qps'"},
		{"a burst of none", []string{"kubeAPI.burst=0"}, nil, "'/kubeAPI/burst'"},
		{"a PDB in words", []string{"podDisruptionBudget.minAvailable=half"}, nil, "'/podDisruptionBudget/minAvailable'"},
		{"two replicas without a lease", []string{"leaderElection.enabled=false"}, nil, "replicaCount: more than 1 replica needs leaderElection.enabled=true"},
		{"two CA sources", []string{"prometheus.tls.caConfigMap=a", "prometheus.tls.caSecret=b"}, nil, "prometheus.tls: set caConfigMap or caSecret, not both"},
		{"a token and basic auth", []string{"prometheus.bearerToken.existingSecret=t", "prometheus.basicAuth.username=u", "prometheus.basicAuth.existingSecret=p"}, nil, "set bearerToken.existingSecret or basicAuth.username, not both"},
		{"basic auth without its Secret", []string{"prometheus.basicAuth.username=u"}, nil, "prometheus.basicAuth.existingSecret: required"},
		{"a ServiceMonitor without its Service", []string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}, nil, "needs metrics.service.enabled=true"},
		{"receivers without their Secret", []string{"notifications.receivers[0].name=chat", "notifications.receivers[0].type=slack",
			"notifications.receivers[0].urlKey=url"}, nil, "notifications.existingSecret: required"},
		{"a receiver of an unknown type", []string{"notifications.existingSecret=s", "notifications.receivers[0].name=chat",
			"notifications.receivers[0].type=teams", "notifications.receivers[0].urlKey=url"}, nil, "'/notifications/receivers/0/type'"},
		{"an HTTPRoute API canaryd does not write", []string{"httpRoute.version=gateway.networking.k8s.io/v1alpha2"}, nil, "'/httpRoute/version'"},
		{"no ServiceAccount at all", []string{"serviceAccount.create=false"}, nil, "serviceAccount.name: set the name of an existing ServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := variation{name: tc.name, set: tc.set, setString: tc.setString}
			_, err := helm(t, append([]string{"template", "canaryd", chartDir(), "--namespace", releaseNS, "--kube-version", kubeVersion}, v.args()...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v %v", tc.set, tc.setString)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not say %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestDaemonAcceptsTheRenderedFlags runs the real canaryd binary, `run` and
// `check`, with every variation's rendered arguments and mounted files
// (Secrets and ConfigMaps as the kubelet would project them) and a
// kubeconfig that does not exist: getting as far as the Kubernetes client
// means every flag exists and every value, default and check parsed.
func TestDaemonAcceptsTheRenderedFlags(t *testing.T) {
	bin := canarydBin(t)
	for _, v := range variations {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v)
			args := localArgs(t, objs, deploymentOf(t, objs).Spec.Template.Spec)
			for _, sub := range []string{"run", "check"} {
				out, err := runDaemon(bin, append(append([]string{sub}, args[1:]...), "--kubeconfig="+filepath.Join(t.TempDir(), "none"))...)
				if err == nil || !strings.Contains(out, "kubernetes client configuration") {
					t.Errorf("canaryd %s with the chart's flags stopped before the Kubernetes client (err %v):\n%s", sub, err, out)
				}
			}
		})
	}
}

func TestDaemonRefusesDefaultsTheSchemaCannotJudge(t *testing.T) {
	bin := canarydBin(t)
	// Well-formed for the schema, wrong for canaryd: steps must increase, a
	// window must be a cron and a duration.
	for set, want := range map[string]string{
		"defaults.steps=500m\\,200m": "--default-steps",
		"defaults.window=sometimes":  "--default-window",
	} {
		objs := render(t, variation{name: set, setString: []string{set}})
		args := localArgs(t, objs, deploymentOf(t, objs).Spec.Template.Spec)
		out, err := runDaemon(bin, append(args, "--kubeconfig="+filepath.Join(t.TempDir(), "none"))...)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: canaryd's error does not name %s (err %v):\n%s", set, want, err, out)
		}
	}
}

// TestChartDefaultsAreTheDaemonDefaults compares every flag the default
// install passes with the default canaryd documents in its --help, so
// values.yaml never claims a default the binary does not have. The chart
// differs on purpose only where the install decides (leader election).
func TestChartDefaultsAreTheDaemonDefaults(t *testing.T) {
	out, _ := runDaemon(canarydBin(t), "run", "-h")
	defaults := parseHelpDefaults(out)
	if len(defaults) < 20 {
		t.Fatalf("parsed only %d defaults from canaryd run -h:\n%s", len(defaults), out)
	}
	intended := map[string]bool{"leader-elect": true, "leader-election-namespace": true, "leader-election-id": true}
	for _, a := range containerArgs(t, deploymentOf(t, render(t, variations[0])).Spec.Template.Spec)[1:] {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if intended[name] {
			continue
		}
		if d, ok := defaults[name]; !ok || d != value {
			t.Errorf("the chart passes --%s=%s; canaryd's own default is %q (documented: %v)", name, value, d, ok)
		}
	}
}

// parseHelpDefaults reads the flag package's usage text: a line "  -name
// type" starts a flag; its description follows, ending in (default …).
func parseHelpDefaults(help string) map[string]string {
	defaults := map[string]string{}
	name, desc := "", ""
	flush := func() {
		if m := defaultRe.FindStringSubmatch(desc); name != "" && m != nil {
			defaults[name] = strings.Trim(m[1], `"`)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			flush()
			name, desc = strings.Fields(rest)[0], ""
			continue
		}
		desc += " " + strings.TrimSpace(line)
	}
	flush()
	return defaults
}

var defaultRe = regexp.MustCompile(`\(default ([^)]*)\)\s*$`)

func runDaemon(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), os.ErrDeadlineExceeded
	}
}

// localArgs rewrites the paths of mounted files in the container's args to
// a directory holding what the kubelet would project there: the rendered
// ConfigMap's data, a CA certificate, a secret's bytes.
func localArgs(t *testing.T, objs []*unstructured.Unstructured, pod corev1.PodSpec) []string {
	t.Helper()
	dir := t.TempDir()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	args := append([]string(nil), containerArgs(t, pod)...)
	local := map[string]string{} // mount path → local directory
	for _, m := range pod.Containers[0].VolumeMounts {
		local[m.MountPath] = filepath.Join(dir, m.Name)
	}
	relocate := func(s string) string {
		for mount, l := range local {
			s = strings.ReplaceAll(s, mount+"/", l+"/")
		}
		return s
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if err := os.MkdirAll(local[m.MountPath], 0o755); err != nil {
			t.Fatal(err)
		}
		// Files that name other files (the notification config) follow them.
		for name, content := range projected(t, objs, volumes[m.Name]) {
			if err := os.WriteFile(filepath.Join(local[m.MountPath], name), []byte(relocate(string(content))), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, a := range args {
		args[i] = relocate(a)
	}
	return args
}

// projected is a volume's files: a rendered ConfigMap's data, or for
// objects the user brings (Secrets, a CA ConfigMap) plausible content.
func projected(t *testing.T, objs []*unstructured.Unstructured, v corev1.Volume) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	switch {
	case v.ConfigMap != nil && find(objs, "ConfigMap", v.ConfigMap.Name) != nil:
		data, _, _ := unstructured.NestedStringMap(find(objs, "ConfigMap", v.ConfigMap.Name).Object, "data")
		for k, val := range data {
			files[k] = []byte(val)
		}
	case v.ConfigMap != nil:
		for _, it := range v.ConfigMap.Items {
			files[it.Path] = caPEM(t)
		}
	case v.Secret != nil:
		for _, it := range v.Secret.Items {
			switch {
			case strings.Contains(v.Name, "-ca"):
				files[it.Path] = caPEM(t)
			case strings.HasPrefix(v.Name, "notify"):
				files[it.Path] = []byte("https://hooks.example.com/services/T0/B0/x")
			default:
				files[it.Path] = []byte("s3cret")
			}
		}
	}
	return files
}

func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
