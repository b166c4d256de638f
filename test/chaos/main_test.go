package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
)

var full = flag.Bool("full", false, "the full chaos run (make chaos): 50 killed rollouts, a 5 minute Prometheus outage")

// env is the package-wide environment TestMain builds.
var env struct {
	skip    string
	cluster *cluster.Cluster
	sim     *meshsim.Sim
	client  kubernetes.Interface
	dyn     dynamic.Interface
	canaryd string // built binary
	dir     string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := runMain(m)
	printTable(os.Stdout)
	if code == 0 && anyViolation() {
		code = 1
	}
	os.Exit(code)
}

func runMain(m *testing.M) int {
	if testing.Short() {
		env.skip = "chaos runs the control plane: not in -short"
		return m.Run()
	}
	if _, err := cluster.FindBinaries(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			fmt.Fprintf(os.Stderr, "FAIL: CI is set and the control-plane binaries are missing: %v\n", err)
			return 1
		}
		env.skip = fmt.Sprintf("control-plane binaries missing (run test/bootstrap.sh): %v", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "canaryd-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.dir = dir
	defer func() {
		if os.Getenv("CANARYD_KEEP_DIR") == "" {
			_ = os.RemoveAll(dir)
		}
	}()
	env.canaryd = filepath.Join(dir, "canaryd")
	build := exec.Command("go", "build", "-o", env.canaryd, "../../cmd/canaryd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building canaryd:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	cl, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Prometheus: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the cluster:", err)
		return 1
	}
	defer func() { _ = cl.Stop() }()
	fmt.Fprintf(os.Stderr, "chaos: cluster up in %s (full run: %v)\n", time.Since(start).Round(time.Millisecond), *full)
	env.cluster = cl
	if env.client, err = kubernetes.NewForConfig(cl.RESTConfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env.dyn, err = dynamic.NewForConfig(cl.RESTConfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sim, err := meshsim.New(meshsim.Config{RESTConfig: cl.RESTConfig, TargetsFile: cl.MeshTargetsFile, Seed: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh simulator:", err)
		return 1
	}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(simCtx) }()
	defer func() { stopSim(); <-simDone }()
	select {
	case <-sim.Ready():
	case err := <-simDone:
		fmt.Fprintln(os.Stderr, "mesh simulator stopped:", err)
		return 1
	case <-time.After(time.Minute):
		fmt.Fprintln(os.Stderr, "mesh simulator not ready within a minute")
		return 1
	}
	env.sim = sim
	return m.Run()
}
