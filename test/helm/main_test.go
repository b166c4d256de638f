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
	"github.com/canaryd/canaryd/test/testenv"
)

// env is what every test shares: a scratch directory, and the cluster, started
// by the first test that needs it (rendering tests need none).
var env struct {
	dir  string // removed at the end unless CANARYD_KEEP_DIR is set
	root string // repository root

	once  sync.Once
	plane *testenv.Env // the cluster and the mesh simulator; in dir, which it keeps
	err   error
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
		if env.plane != nil {
			_ = env.plane.Stop()
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
	if skip, err := testenv.Available(); err != nil {
		t.Fatal(err)
	} else if skip != "" {
		t.Skip(skip)
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
		env.plane, env.err = testenv.Start(ctx, testenv.Options{
			Dir:     env.dir,
			Cluster: cluster.Options{CRDs: append(files, crds...)},
			Sim:     meshsim.Config{Seed: 1},
		})
	})
	if env.err != nil {
		t.Fatalf("local control plane: %v", env.err)
	}
	return env.plane.Cluster
}
