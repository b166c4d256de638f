package helm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
)

// invalid holds two mistakes a schema must catch: an unknown field and a
// value of the wrong type. Both validators must reject it, or their
// passing the chart proves nothing.
const invalid = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: canaryd
spec:
  replica: 2
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          ports:
            - containerPort: eighty
`

// TestRenderedObjectsPassServerSideDryRun submits every rendered object of
// every variation to the real API server with dryRun=All and strict field
// validation: schemas, defaulting, admission and RBAC escalation checks all
// run, nothing is stored. The monitor kinds are validated by the
// Prometheus Operator's own CRDs, the Linkerd ones by Linkerd's.
func TestRenderedObjectsPassServerSideDryRun(t *testing.T) {
	c := theCluster(t)
	ctx := context.Background()
	client := kubernetes.NewForConfigOrDie(c.RESTConfig)
	dyn := dynamic.NewForConfigOrDie(c.RESTConfig)
	groups, err := restmapper.GetAPIGroupResources(client.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	for _, ns := range []string{releaseNS, "team-a", "team-b", "linkerd-viz"} {
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	submit := func(u *unstructured.Unstructured, dryRun bool) error {
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			return err
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		opts := metav1.CreateOptions{FieldValidation: "Strict"}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = r.Create(ctx, u, opts)
		return err
	}
	for _, v := range variations {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v)
			// The ServiceAccount admission plugin refuses a Pod whose
			// ServiceAccount does not exist, and a dry-run stores nothing:
			// the ServiceAccount is created for real (strictly) first.
			for _, u := range objs {
				if u.GetKind() == "ServiceAccount" {
					if err := submit(u.DeepCopy(), false); err != nil && !apierrors.IsAlreadyExists(err) {
						t.Errorf("ServiceAccount %s: %v", u.GetName(), err)
					}
				}
			}
			for _, u := range objs {
				if u.GetKind() == "ServiceAccount" {
					continue
				}
				if err := submit(u, true); err != nil {
					t.Errorf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
		})
	}
	t.Run("a broken manifest is refused", func(t *testing.T) {
		// The API server stops at the first mistake: the wrong type when
		// both are there, the unknown field when it is alone.
		for broken, want := range map[string]string{
			invalid: "containerPort",
			strings.Replace(invalid, "containerPort: eighty", "containerPort: 80", 1): `unknown field "spec.replica"`,
		} {
			objs, err := decodeAll([]byte(broken))
			if err != nil {
				t.Fatal(err)
			}
			if err := submit(objs[0], true); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("strict dry-run of a broken Deployment: %v; want an error naming %s", err, want)
			}
		}
	})
}

// TestRenderedObjectsPassKubeconform validates every variation with
// kubeconform in strict mode, offline, against schemas generated from the
// local API server (see schemaWriter).
func TestRenderedObjectsPassKubeconform(t *testing.T) {
	c := theCluster(t)
	bin := kubeconformBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sw, err := newSchemaWriter(ctx, kubernetes.NewForConfigOrDie(c.RESTConfig))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written := map[schema.GroupVersionKind]bool{}
	manifests := map[string][]byte{"broken": []byte(invalid)}
	for _, v := range variations {
		var buf bytes.Buffer
		for _, u := range render(t, v) {
			gvk := u.GroupVersionKind()
			if !written[gvk] {
				if err := sw.write(dir, gvk); err != nil {
					t.Fatal(err)
				}
				written[gvk] = true
			}
			b, err := u.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			buf.WriteString("---\n")
			buf.Write(b)
			buf.WriteString("\n")
		}
		manifests[v.name] = buf.Bytes()
	}
	run := func(name string) (string, error) {
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, manifests[name], 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-strict", "-summary", "-kubernetes-version", strings.TrimPrefix(kubeVersion, "v"),
			"-schema-location", filepath.Join(dir, schemaLocation), file)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, v := range variations {
		t.Run(v.name, func(t *testing.T) {
			out, err := run(v.name)
			if err != nil || !strings.Contains(out, "Invalid: 0, Errors: 0, Skipped: 0") {
				t.Errorf("kubeconform: %v\n%s", err, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
	t.Run("a broken manifest is refused", func(t *testing.T) {
		out, err := run("broken")
		if err == nil || !strings.Contains(out, "replica") || !strings.Contains(out, "containerPort") {
			t.Errorf("kubeconform passed or missed a mistake (err %v):\n%s", err, out)
		}
	})
}
