package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crdFiles resolves Options.CRDs: nil means every manifest in the shared crds directory.
func crdFiles(files []string) ([]string, error) {
	if files != nil {
		// Checked here so that a typo fails before any process starts.
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("CRD manifest: %w", err)
			}
		}
		return files, nil
	}
	shared, err := SharedDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(shared, "crds")
	matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list CRDs: %w", err)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("no CRD manifests (*.yaml) in %s; set CANARYD_SHARED or Options.CRDs", dir)
	}
	sort.Strings(matches)
	return matches, nil
}

// SharedDir is $CANARYD_SHARED, or the "shared" directory beside the repository root (<root>/../shared).
func SharedDir() (string, error) {
	if d := os.Getenv("CANARYD_SHARED"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("locate shared dir (set CANARYD_SHARED): %w", err)
	}
	return filepath.Join(filepath.Dir(root), "shared"), nil
}

// RepoRoot walks up from the working directory to the go.mod of module github.com/canaryd/canaryd. Tools
// modules nested inside the repository (test/tools/k8s) are passed over.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			first, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if bytes.Equal(bytes.TrimSpace([]byte(first)), []byte("module github.com/canaryd/canaryd")) {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the canaryd repository (no go.mod of module github.com/canaryd/canaryd above the working directory)")
		}
		dir = parent
	}
}

// installCRDs creates every CustomResourceDefinition in files and waits until each is Established.
func (c *Cluster) installCRDs(ctx context.Context, files []string) error {
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	client := dyn.Resource(crdResource)
	var names []string
	for _, f := range files {
		objs, err := readManifests(f)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if obj.GetKind() != "CustomResourceDefinition" {
				return fmt.Errorf("CRD file %s holds a %s %q, not a CustomResourceDefinition", f, obj.GetKind(), obj.GetName())
			}
			if _, err := client.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("install CRD %s from %s: %w", obj.GetName(), f, err)
			}
			names = append(names, obj.GetName())
		}
	}
	for _, name := range names {
		err := poll(ctx, nil, "CRD "+name+" not Established", 30*time.Second, func(ctx context.Context) error {
			crd, err := client.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("conditions: %v", conds)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readManifests decodes every non-empty YAML or JSON document of a file.
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64<<10)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// createNodes registers n fake nodes for kwok, the way a kubelet would: with capacity in the status.
func (c *Cluster) createNodes(ctx context.Context, n, pods int) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	for i := 0; i < n; i++ {
		name := "kwok-node-" + strconv.Itoa(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
			},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
		c.Nodes = append(c.Nodes, name)
	}
	return nil
}

// waitForNodesReady waits until kwok has marked every node Ready.
func (c *Cluster) waitForNodesReady(ctx context.Context, kwok *process) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return poll(ctx, kwok, "did not make the nodes Ready", 60*time.Second, func(ctx context.Context) error {
		for _, name := range c.Nodes {
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s not Ready", name)
			}
			// A taint would keep test pods Pending for reasons that have nothing to do with the test.
			if len(node.Spec.Taints) > 0 {
				return fmt.Errorf("node %s has taints %v", name, node.Spec.Taints)
			}
		}
		return nil
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitForDefaultServiceAccount waits for the ServiceAccount controller: until "default" exists in namespace
// default, the ServiceAccount admission plugin rejects every pod there.
func (c *Cluster) waitForDefaultServiceAccount(ctx context.Context, cm *component) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return poll(ctx, cm.proc, "did not create ServiceAccount default/default", 60*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("not yet: %w", err)
		}
		return err
	})
}
