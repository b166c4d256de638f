package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
	"github.com/canaryd/canaryd/test/testenv"
)

// Env is one benchmark environment: a control plane with Prometheus, the
// mesh simulator running in this process, and the built canaryd binary.
// Stop (testenv's) stops the simulator and the cluster.
type Env struct {
	*testenv.Env
	Build string // the source canaryd was built from (BuildOf)
}

// EnvOptions size the environment.
type EnvOptions struct {
	Dir   string // work directory (logs, binary, cluster); must exist
	Nodes int    // kwok nodes of 1,000 pods each
}

// StartEnv builds canaryd, starts the cluster and the simulator.
func StartEnv(ctx context.Context, o EnvOptions) (*Env, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("finding the repository: %w", err)
	}
	build := BuildOf(root) // read just before the build, not after the cluster's start-up
	te, err := testenv.Start(ctx, testenv.Options{
		Dir: o.Dir,
		// Built as `make build` builds the shipped binary: its size is part of
		// the RSS measured.
		Canaryd: &testenv.Build{Flags: []string{"-trimpath", "-ldflags", "-s -w"}, Env: []string{"CGO_ENABLED=0"}},
		Cluster: cluster.Options{Nodes: o.Nodes, ScrapeInterval: time.Second, Timeout: 3 * time.Minute},
		// The simulator's requests are Poisson, as real arrivals are: detection
		// times must carry the spread of real traffic, not a metronome's.
		Sim:    meshsim.Config{Seed: 8, Poisson: true},
		SimLog: "meshsim.log",
	})
	if err != nil {
		return nil, err
	}
	return &Env{Env: te, Build: build}, nil
}

// Daemon is one running canaryd process.
type Daemon struct {
	URL string // http://127.0.0.1:<port>: /metrics, /readyz, /debug/pprof
	Log string
	cmd *exec.Cmd
	// exited is closed when the process has been waited for.
	exited chan struct{}
	err    error
}

// StartCanaryd runs canaryd against the cluster and Prometheus with args
// added to the common ones, GOMAXPROCS=2, and waits until it is ready.
func (e *Env) StartCanaryd(ctx context.Context, name string, args ...string) (*Daemon, error) {
	return e.StartCanarydWithEnv(ctx, name, nil, args...)
}

// StartCanarydWithEnv is StartCanaryd with extra environment variables
// (e.g. GOMEMLIMIT=100MiB).
func (e *Env) StartCanarydWithEnv(ctx context.Context, name string, env []string, args ...string) (*Daemon, error) {
	for attempt := 1; ; attempt++ {
		d, err := e.startCanaryd(ctx, name, env, args)
		// A port picked free may be taken before canaryd binds it: try again.
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return d, err
		}
	}
}

func (e *Env) startCanaryd(ctx context.Context, name string, env, args []string) (*Daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &Daemon{URL: "http://" + port, Log: filepath.Join(e.Dir, name+"-canaryd.log"), exited: make(chan struct{})}
	full := append([]string{"run", "--kubeconfig", e.Cluster.Kubeconfig, "--listen", port,
		"--prometheus-url", e.Cluster.Prometheus.URL, "--scrape-interval", "1s", "--log-level", "info"}, args...)
	logf, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("canaryd log: %w", err)
	}
	d.cmd = exec.Command(e.Canaryd, full...)
	d.cmd.Env = append(append(os.Environ(), "GOMAXPROCS=2"), env...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting canaryd: %w", err)
	}
	logf.Close()
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("canaryd exited before it was ready (%w): %s", d.err, tail(d.Log, 5))
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if httpOK(d.URL + "/readyz") {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("canaryd not ready within 2 minutes: %s", tail(d.Log, 5))
		}
	}
}

// Pid is the canaryd process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop ends canaryd with SIGTERM, then SIGKILL after 10 s.
func (d *Daemon) Stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// Metrics scrapes canaryd's /metrics.
func (d *Daemon) Metrics(ctx context.Context) (Samples, error) {
	return Scrape(ctx, d.URL+"/metrics")
}

// Profile saves a pprof profile ("profile?seconds=30", "heap") to path.
func (d *Daemon) Profile(ctx context.Context, which, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/debug/pprof/"+which, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", which, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s (is canaryd running with --pprof?)", which, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("saving profile %s: %w", which, err)
	}
	return f.Close()
}

func httpOK(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// freePort is a loopback host:port nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail is the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
