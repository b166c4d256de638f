package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// MeshJob is the Prometheus job that scrapes the mesh simulator's file_sd targets, named after Linkerd-viz's.
const MeshJob = "linkerd-proxy"

// StaticJob is the Prometheus job that scrapes PromOptions.StaticTargets.
const StaticJob = "static"

// PromOptions configure StartPrometheus.
type PromOptions struct {
	// Dir holds the configuration, the TSDB and the log. Empty: a new temporary directory, which is not
	// removed (pass t.TempDir() to have it cleaned up).
	Dir string
	// ScrapeInterval is the global scrape and rule evaluation interval (default 1s).
	ScrapeInterval time.Duration
	// MeshTargetsFile is the file_sd file of the "linkerd-proxy" job: a JSON list of target groups whose
	// labels use Kubernetes service-discovery meta labels, relabelled as Linkerd-viz does. It may not exist
	// yet; Prometheus picks it up when it appears. Empty: Dir/mesh-targets.json.
	MeshTargetsFile string
	// StaticTargets are extra host:port targets on loopback, scraped at /metrics with honor_labels: true, so
	// the series keep the namespace/pod/deployment labels the target itself sets.
	StaticTargets []string
}

// Prometheus is a running (or stopped, see Stop and Restart) Prometheus server on 127.0.0.1.
type Prometheus struct {
	URL             string // http://127.0.0.1:<port>, also after Restart
	Dir             string
	ConfigFile      string
	MeshTargetsFile string

	bin    string
	args   []string
	logDir string
	mu     sync.Mutex
	proc   *process // nil while stopped
}

// StartPrometheus writes a configuration and starts Prometheus, returning once /-/ready answers.
// It needs no cluster: analysis tests point it at their own targets.
func StartPrometheus(ctx context.Context, o PromOptions) (*Prometheus, error) {
	bins, err := FindBinaries()
	if err != nil && !fileExists(bins.Prometheus) {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	return startPrometheus(ctx, bins.Prometheus, o, "")
}

// startPrometheus starts Prometheus with its log in logDir (default Dir/logs).
func startPrometheus(ctx context.Context, bin string, o PromOptions, logDir string) (*Prometheus, error) {
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = time.Second
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "canaryd-prometheus-")
		if err != nil {
			return nil, fmt.Errorf("prometheus: temp dir: %w", err)
		}
		o.Dir = d
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prometheus: create dir: %w", err)
	}
	if o.MeshTargetsFile == "" {
		o.MeshTargetsFile = filepath.Join(dir, "mesh-targets.json")
	}
	cfg, err := promConfig(o)
	if err != nil {
		return nil, err
	}
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	p := &Prometheus{Dir: dir, ConfigFile: filepath.Join(dir, "prometheus.yml"), MeshTargetsFile: o.MeshTargetsFile,
		bin: bin, logDir: logDir}
	if err := os.WriteFile(p.ConfigFile, cfg, 0o644); err != nil {
		return nil, fmt.Errorf("prometheus: write config: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	p.URL = "http://" + hostPort(port)
	p.args = []string{
		"--config.file=" + p.ConfigFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=3h",
		"--web.listen-address=" + hostPort(port),
		"--web.enable-lifecycle",
		// Series are considered gone 5m after their last sample by default; a stopped simulator pod should
		// vanish from instant queries sooner than that in tests.
		"--query.lookback-delta=1m",
	}
	if err := p.start(ctx); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// start runs the process with p.args and waits for readiness.
func (p *Prometheus) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		return errors.New("prometheus: already running")
	}
	proc, err := startProcess("prometheus", p.logDir, p.bin, p.args, nil)
	if err != nil {
		return err
	}
	p.proc = proc
	client := &http.Client{}
	defer client.CloseIdleConnections()
	return poll(ctx, proc, "did not become ready", 30*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
}

// Stop shuts Prometheus down gracefully (SIGTERM; SIGKILL after 10s) and waits for it. Idempotent; the data
// directory is kept, so Restart can bring the same server back.
func (p *Prometheus) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	p.proc.stop(10 * time.Second)
	p.proc = nil
	return nil
}

// Restart stops Prometheus if it runs and starts it again on the same port with the same data directory,
// returning once it is ready: an outage that tests can place precisely (Stop, assert, Restart).
func (p *Prometheus) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.start(ctx)
}

// Pid is the process id of the running Prometheus, 0 while stopped.
func (p *Prometheus) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.Pid()
}

// promConfig renders prometheus.yml. JSON is valid YAML, and encoding/json quotes every value safely.
func promConfig(o PromOptions) ([]byte, error) {
	interval := model(o.ScrapeInterval)
	type relabel struct {
		SourceLabels []string `json:"source_labels,omitempty"`
		TargetLabel  string   `json:"target_label,omitempty"`
		Action       string   `json:"action,omitempty"`
		Regex        string   `json:"regex,omitempty"`
		Replacement  string   `json:"replacement,omitempty"`
	}
	type job map[string]any
	jobs := []job{{
		"job_name": MeshJob,
		"file_sd_configs": []map[string]any{{
			"files":            []string{o.MeshTargetsFile},
			"refresh_interval": "1s",
		}},
		// Linkerd-viz's relabelling, reduced to what a file_sd target carries: namespace and pod from the
		// pod, the linkerd.io/proxy-* pod labels without their prefix (proxy-deployment → deployment), and
		// every other pod label under its sanitised name (pod-template-hash → pod_template_hash).
		"relabel_configs": []relabel{
			{SourceLabels: []string{"__meta_kubernetes_namespace"}, TargetLabel: "namespace", Action: "replace"},
			{SourceLabels: []string{"__meta_kubernetes_pod_name"}, TargetLabel: "pod", Action: "replace"},
			{Action: "labelmap", Regex: "__meta_kubernetes_pod_label_linkerd_io_proxy_(.+)", Replacement: "$1"},
			{Action: "labeldrop", Regex: "__meta_kubernetes_pod_label_linkerd_io_proxy_(.+)"},
			{Action: "labelmap", Regex: "__meta_kubernetes_pod_label_(.+)", Replacement: "$1"},
		},
	}}
	if len(o.StaticTargets) > 0 {
		jobs = append(jobs, job{
			"job_name":       StaticJob,
			"honor_labels":   true,
			"metrics_path":   "/metrics",
			"static_configs": []map[string]any{{"targets": o.StaticTargets}},
		})
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     interval,
			"evaluation_interval": interval,
			// Prometheus rejects a timeout longer than the interval; its default (10s) is.
			"scrape_timeout": interval,
		},
		"scrape_configs": jobs,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("prometheus: render config: %w", err)
	}
	return append(b, '\n'), nil
}

// model formats a duration the way Prometheus's config parser accepts it (whole milliseconds, e.g. "1500ms").
func model(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}
