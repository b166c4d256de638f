package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
	"github.com/canaryd/canaryd/test/testenv"
)

// env is everything the demo runs: the local control plane with Prometheus
// and the mesh simulator inside this process (test/testenv), and canaryd as a
// child process.
type env struct {
	dir        string
	cluster    *cluster.Cluster
	client     kubernetes.Interface
	dyn        dynamic.Interface
	sim        *meshsim.Sim
	prom       *analysis.Prom // live numbers, with the PromQL canaryd's analysis uses
	canarydLog string

	proc    *exec.Cmd
	exited  chan struct{} // closed when canaryd exits
	exitErr error         // set before exited closes

	plane *testenv.Env // everything but canaryd
}

// canarydFlags are e2e's settings (test/e2e/fixture_test.go): 1 s scrapes
// and checks, a 5 s step interval and 5 requests for a conclusive check, so
// that three steps take seconds, not the production default of minutes.
func canarydFlags(kubeconfig, promURL string) []string {
	return []string{
		"run", "--kubeconfig", kubeconfig, "--namespaces", namespace, "--listen", "127.0.0.1:0",
		"--prometheus-url", promURL, "--scrape-interval", "1s", "--analysis-period", "1s",
		"--default-interval", interval.String(), "--default-min-requests", "5", "--log-level", "debug",
	}
}

// startEnv builds canaryd and starts everything, printing one line per
// part. On error (ctx cancelled included) whatever started is stopped.
func startEnv(ctx context.Context, dir string, p *printer) (e *env, err error) {
	e = &env{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.stop())
			e = nil
		}
	}()
	e.plane, err = testenv.Start(ctx, testenv.Options{
		Dir:     dir,
		Canaryd: &testenv.Build{},
		Sim:     meshsim.Config{Namespaces: []string{namespace}, Seed: 1},
		// The simulator's warnings go to a file: the terminal is for the story.
		SimLog: "meshsim.log",
		Progress: func(te *testenv.Env, s testenv.Step, took time.Duration) {
			switch s {
			case testenv.CanarydBuilt:
				p.printf("%-27s in %.1fs", "built canaryd", took.Seconds())
			case testenv.ClusterUp:
				p.printf("%-27s up in %.1fs: etcd, kube-apiserver, controller-manager, scheduler, kwok",
					"control plane + Prometheus", took.Seconds())
			case testenv.SimReady:
				p.printf("%-27s ready, metrics on %s scraped by Prometheus", "mesh simulator", te.Sim.Addr())
			}
		},
	})
	if err != nil {
		return e, err
	}
	e.cluster, e.client, e.dyn, e.sim = e.plane.Cluster, e.plane.Client, e.plane.Dyn, e.plane.Sim
	e.prom, err = analysis.NewPrometheus(analysis.Config{
		Client:         analysis.ClientConfig{Address: e.cluster.Prometheus.URL, Timeout: 2 * time.Second},
		ScrapeInterval: time.Second,
	})
	if err != nil {
		return e, fmt.Errorf("prometheus client: %w", err)
	}
	if err := e.startCanaryd(e.plane.Canaryd); err != nil {
		return e, err
	}
	p.printf("%-27s running, pid %d", "canaryd", e.proc.Process.Pid)
	p.printf("%-27s %s", "binary, logs, cluster state", rel(dir))
	return e, nil
}

// rel shortens path to be relative to the working directory when it is
// inside it (make demo runs in the repository root: ".cache/demo").
func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	r, err := filepath.Rel(wd, path)
	if err != nil || strings.HasPrefix(r, "..") {
		return path
	}
	return r
}

// startCanaryd runs canaryd in its own process group, so that Ctrl-C in the
// terminal reaches only the demo, which then stops canaryd before the API
// server; the parent-death signal kills it if the demo itself is killed.
func (e *env) startCanaryd(bin string) error {
	e.canarydLog = filepath.Join(e.dir, "canaryd.log")
	logf, err := os.Create(e.canarydLog)
	if err != nil {
		return fmt.Errorf("canaryd log: %w", err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(bin, canarydFlags(e.cluster.Kubeconfig, e.cluster.Prometheus.URL)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting canaryd: %w", err)
	}
	e.proc, e.exited = cmd, make(chan struct{})
	go func() {
		e.exitErr = cmd.Wait()
		close(e.exited)
	}()
	return nil
}

// canarydGone returns an error with the end of canaryd's log if canaryd has
// exited: the demo cannot go on without it.
func (e *env) canarydGone() error {
	select {
	case <-e.exited:
		return fmt.Errorf("canaryd exited (%w); last lines of %s:\n%s", e.exitErr, e.canarydLog, e.logTail(15))
	default:
		return nil
	}
}

func (e *env) logTail(n int) string {
	b, err := os.ReadFile(e.canarydLog)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop stops canaryd, then the simulator and the cluster, and waits for
// each. It is safe on a partly started env and safe to call twice.
func (e *env) stop() error {
	if e.proc != nil {
		_ = e.proc.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			// canaryd did not finish its graceful shutdown; the demo must not hang or leave it behind.
			_ = e.proc.Process.Kill()
			<-e.exited
		}
		e.proc = nil
	}
	if e.plane != nil {
		return e.plane.Stop()
	}
	return nil
}
