package meshsim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// targetGroup is one entry of a Prometheus file_sd file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// renderTargets lists one target group per meshed pod that has an IP and a known owner. Every group points at
// the simulator's own address, with the pod's exposition as __metrics_path__ and the __meta_kubernetes_* labels
// that Kubernetes service discovery would give, so that the Linkerd scrape job's relabelling works unchanged:
// __meta_kubernetes_pod_label_linkerd_io_proxy_deployment becomes deployment="<name>".
func renderTargets(addr string, w *world) ([]byte, error) {
	groups := []targetGroup{} // "[]", not "null", when there are no pods
	for _, p := range w.pods {
		if p.ip == "" || !p.resolved {
			continue
		}
		labels := map[string]string{
			"__metrics_path__":            "/pods/" + p.key.ns + "/" + p.key.name + "/metrics",
			"__meta_kubernetes_namespace": p.key.ns,
			"__meta_kubernetes_pod_name":  p.key.name,
			"__meta_kubernetes_pod_ip":    p.ip,
			"__meta_kubernetes_pod_uid":   string(p.uid),
		}
		for k, v := range p.labels {
			labels["__meta_kubernetes_pod_label_"+sanitizeLabelName(k)] = v
		}
		groups = append(groups, targetGroup{Targets: []string{addr}, Labels: labels})
	}
	slices.SortFunc(groups, func(a, b targetGroup) int {
		return cmp.Or(
			cmp.Compare(a.Labels["__meta_kubernetes_namespace"], b.Labels["__meta_kubernetes_namespace"]),
			cmp.Compare(a.Labels["__meta_kubernetes_pod_name"], b.Labels["__meta_kubernetes_pod_name"]),
		)
	})
	data, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode targets: %w", err)
	}
	return append(data, '\n'), nil
}

// sanitizeLabelName maps a Kubernetes label key to a Prometheus label name the way Kubernetes service
// discovery does: every character outside [a-zA-Z0-9_] becomes "_" ("linkerd.io/proxy-deployment" →
// "linkerd_io_proxy_deployment").
func sanitizeLabelName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, s)
}

// writeFileAtomic replaces path with data through a temporary file in the same directory and a rename, so that
// Prometheus, which re-reads the file on every change, never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
