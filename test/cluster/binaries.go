package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Versions of the tools test/bootstrap.sh installs; the cache layout is <name>-<version>/bin.
const (
	KubernetesVersion = "v1.33.13"
	KwokVersion       = "v0.8.0"
	HelmVersion       = "v3.22.0"
)

// ErrBinariesMissing is wrapped by the errors of Start and StartPrometheus when a binary is not installed.
// Tests use it to tell "not bootstrapped" apart from "broken".
var ErrBinariesMissing = errors.New("control-plane binaries missing: run test/bootstrap.sh")

// Binaries are the absolute paths of every program the harness runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kwok, Prometheus string
	KwokStages                                                      string // directory with kwok's Stage manifests
	Helm                                                            string // not run by the harness; for e2e suites
}

// CacheDir is $CANARYD_CACHE, or ~/.cache/canaryd.
func CacheDir() string {
	if d := os.Getenv("CANARYD_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "canaryd-cache")
	}
	return filepath.Join(home, ".cache", "canaryd")
}

// FindBinaries locates the binaries in the cache and on the system, and reports every missing one at once.
func FindBinaries() (Binaries, error) {
	cache := CacheDir()
	k8s := filepath.Join(cache, "k8s-"+KubernetesVersion, "bin")
	kwok := filepath.Join(cache, "kwok-"+KwokVersion)
	b := Binaries{
		Etcd:              systemBinary("etcd"),
		Prometheus:        systemBinary("prometheus"),
		APIServer:         filepath.Join(k8s, "kube-apiserver"),
		ControllerManager: filepath.Join(k8s, "kube-controller-manager"),
		Scheduler:         filepath.Join(k8s, "kube-scheduler"),
		Kwok:              filepath.Join(kwok, "bin", "kwok"),
		KwokStages:        filepath.Join(kwok, "stages"),
		Helm:              filepath.Join(cache, "helm-"+HelmVersion, "bin", "helm"),
	}
	var missing []string
	for _, p := range []string{b.Etcd, b.Prometheus, b.APIServer, b.ControllerManager, b.Scheduler, b.Kwok} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	for _, s := range kwokStageFiles {
		if _, err := os.Stat(filepath.Join(b.KwokStages, s)); err != nil {
			missing = append(missing, filepath.Join(b.KwokStages, s))
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("%w (CANARYD_CACHE=%s; %s/%s); missing: %q", ErrBinariesMissing, cache, runtime.GOOS, runtime.GOARCH, missing)
	}
	return b, nil
}

// systemBinary prefers /usr/bin (where the Debian packages put etcd and prometheus) and falls back to PATH.
func systemBinary(name string) string {
	p := filepath.Join("/usr/bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return p
}

// kwokStageFiles are the kwok stages the harness applies, relative to Binaries.KwokStages: nodes become
// Ready at once and keep a lease; pods become Running+Ready with an IP at once, finish, and go away on delete.
var kwokStageFiles = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}
