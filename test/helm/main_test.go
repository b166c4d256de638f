package helm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
)

// env is what every test shares: a scratch directory, and the cluster, started
// by the first test that needs it (rendering tests need none).
var env struct {
	dir  string // removed at the end unless CANARYD_KEEP_DIR is set
	root string // repository root

	once    sync.Once
	cluster *cluster.Cluster
	sim     *meshsim.Sim
	stopSim func()
	err     error
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if env.root, err = cluster.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env.dir, err = os.MkdirTemp("", "canaryd-helm-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if env.stopSim != nil {
			env.stopSim()
		}
		if env.cluster != nil {
			_ = env.cluster.Stop()
		}
		if os.Getenv("CANARYD_KEEP_DIR") == "" {
			_ = os.RemoveAll(env.dir)
		}
	}()
	return m.Run()
}

// ci: missing tools fail the run instead of skipping tests.
func ci() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if ci() {
		t.Fatalf("CI is set and "+format, args...)
	}
	t.Skipf(format, args...)
}

// theCluster starts the local control plane with Prometheus, the shared CRDs
// and the Prometheus Operator's monitor CRDs, plus the mesh simulator, once.
func theCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no control plane")
	}
	if _, err := cluster.FindBinaries(); err != nil {
		skipOrFail(t, "control-plane binaries missing (run test/bootstrap.sh): %v", err)
	}
	crds := monitoringCRDs(t)
	env.once.Do(func() {
		shared, err := cluster.SharedDir()
		if err != nil {
			env.err = err
			return
		}
		files, err := filepath.Glob(filepath.Join(shared, "crds", "*.yaml"))
		if err != nil || len(files) == 0 {
			env.err = fmt.Errorf("no CRDs in %s/crds: %w", shared, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		env.cluster, env.err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(env.dir, "cluster"),
			Prometheus: true, CRDs: append(files, crds...)})
		if env.err != nil {
			return
		}
		env.sim, env.err = meshsim.New(meshsim.Config{RESTConfig: env.cluster.RESTConfig, TargetsFile: env.cluster.MeshTargetsFile, Seed: 1})
		if env.err != nil {
			return
		}
		simCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- env.sim.Run(simCtx) }()
		env.stopSim = func() { stop(); <-done }
		select {
		case <-env.sim.Ready():
		case err := <-done:
			env.err = fmt.Errorf("mesh simulator stopped: %w", err)
		case <-time.After(time.Minute):
			env.err = fmt.Errorf("mesh simulator not ready within a minute")
		}
	})
	if env.err != nil {
		t.Fatalf("local control plane: %v", env.err)
	}
	return env.cluster
}
