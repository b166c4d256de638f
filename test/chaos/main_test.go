package chaos

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/test/cluster"
	"github.com/canaryd/canaryd/test/meshsim"
	"github.com/canaryd/canaryd/test/testenv"
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
	return testenv.Main(m.Run, testenv.Options{
		Name:    "chaos",
		Canaryd: &testenv.Build{},
		Sim:     meshsim.Config{Seed: 1},
		Progress: func(_ *testenv.Env, s testenv.Step, took time.Duration) {
			if s == testenv.ClusterUp {
				fmt.Fprintf(os.Stderr, "chaos: cluster up in %s (full run: %v)\n", took.Round(time.Millisecond), *full)
			}
		},
	}, func(e *testenv.Env, skip string) {
		env.skip = skip
		if e != nil {
			env.cluster, env.sim, env.client, env.dyn, env.canaryd, env.dir = e.Cluster, e.Sim, e.Client, e.Dyn, e.Canaryd, e.Dir
		}
	})
}
