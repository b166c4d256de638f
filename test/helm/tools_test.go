package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/canaryd/canaryd/test/cluster"
)

// Pinned tool versions. kubeconform and the Prometheus Operator come from
// the Go module proxy once and from the module cache afterwards.
const (
	kubeconformVersion = "v0.7.0"
	// The monitor CRDs (ServiceMonitor, PodMonitor) as the Prometheus
	// Operator publishes them, from its module's example/ directory.
	promOperatorVersion = "v0.85.0"
	// kubeVersion is what the chart is rendered for: the local control plane's.
	kubeVersion = "1.33.13"
)

func helmBin(t *testing.T) string {
	t.Helper()
	b, _ := cluster.FindBinaries() // Helm's path is set even when other binaries are missing
	if st, err := os.Stat(b.Helm); err != nil || st.Mode()&0o111 == 0 {
		skipOrFail(t, "helm %s is missing at %s: run test/bootstrap.sh", cluster.HelmVersion, b.Helm)
	}
	return b.Helm
}

// helm runs helm with its cache, config and data in the scratch directory,
// so the user's repositories and plugins never play a part.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	home := filepath.Join(env.dir, "helm-home")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data", "HELM_PLUGINS="+home+"/plugins")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func chartDir() string { return filepath.Join(env.root, "charts", "canaryd") }

var tools struct {
	mu    sync.Mutex
	built map[string]string
	errs  map[string]error
}

// tool builds (once per test binary) or finds a helper binary; a failure is
// remembered so that every test needing it reports the same cause.
func tool(t *testing.T, name string, build func() (string, error)) string {
	t.Helper()
	tools.mu.Lock()
	defer tools.mu.Unlock()
	if tools.built == nil {
		tools.built, tools.errs = map[string]string{}, map[string]error{}
	}
	if _, done := tools.built[name]; !done {
		if _, failed := tools.errs[name]; !failed {
			path, err := build()
			if err != nil {
				tools.errs[name] = err
			} else {
				tools.built[name] = path
			}
		}
	}
	if err := tools.errs[name]; err != nil {
		skipOrFail(t, "%s is not available: %v", name, err)
	}
	return tools.built[name]
}

// goCmd runs the go command outside canaryd's module (so go.mod is never
// touched) and returns its stdout.
func goCmd(dir string, extraEnv []string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// kubeconformBin installs kubeconform into $CANARYD_CACHE/kubeconform-<ver>/bin,
// beside the tools test/bootstrap.sh builds, unless it is there already.
func kubeconformBin(t *testing.T) string {
	return tool(t, "kubeconform", func() (string, error) {
		dir := filepath.Join(cluster.CacheDir(), "kubeconform-"+kubeconformVersion)
		bin := filepath.Join(dir, "bin", "kubeconform")
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating %s: %w", dir, err)
		}
		_, err := goCmd(dir, []string{"GOBIN=" + filepath.Join(dir, "bin"), "CGO_ENABLED=0", "GOFLAGS=-mod=mod"},
			"install", "github.com/yannh/kubeconform/cmd/kubeconform@"+kubeconformVersion)
		if err != nil {
			return "", fmt.Errorf("installing kubeconform %s (needs the Go module proxy the first time): %w", kubeconformVersion, err)
		}
		return bin, nil
	})
}

// dockerfileLintBin builds hack/dockerfile-lint (its own module, BuildKit's
// parser and linter) into the scratch directory.
func dockerfileLintBin(t *testing.T) string {
	return tool(t, "dockerfile-lint", func() (string, error) {
		bin := filepath.Join(env.dir, "bin", "dockerfile-lint")
		if _, err := goCmd(filepath.Join(env.root, "hack", "dockerfile-lint"), nil, "build", "-o", bin, "."); err != nil {
			return "", fmt.Errorf("building hack/dockerfile-lint (needs the Go module proxy the first time): %w", err)
		}
		return bin, nil
	})
}

// canarydBin builds the daemon the way the e2e suite does.
func canarydBin(t *testing.T) string {
	return tool(t, "canaryd", func() (string, error) {
		bin := filepath.Join(env.dir, "bin", "canaryd")
		if _, err := goCmd(env.root, nil, "build", "-o", bin, "./cmd/canaryd"); err != nil {
			return "", err
		}
		return bin, nil
	})
}

// monitoringCRDs returns the ServiceMonitor and PodMonitor CRD manifests of
// the pinned Prometheus Operator release, from its Go module.
func monitoringCRDs(t *testing.T) []string {
	dir := tool(t, "prometheus-operator CRDs", func() (string, error) {
		out, err := goCmd(env.dir, []string{"GOFLAGS=-mod=mod"}, "mod", "download", "-json",
			"github.com/prometheus-operator/prometheus-operator@"+promOperatorVersion)
		if err != nil {
			return "", fmt.Errorf("fetching the Prometheus Operator %s module: %w", promOperatorVersion, err)
		}
		var mod struct{ Dir, Error string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			return "", fmt.Errorf("go mod download: %w %s", err, mod.Error)
		}
		return filepath.Join(mod.Dir, "example", "prometheus-operator-crd"), nil
	})
	var files []string
	for _, kind := range []string{"servicemonitors", "podmonitors"} {
		f := filepath.Join(dir, "monitoring.coreos.com_"+kind+".yaml")
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("the Prometheus Operator %s module has no %s: %v", promOperatorVersion, f, err)
		}
		files = append(files, f)
	}
	return files
}
