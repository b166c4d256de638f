// Package e2e runs canaryd, as its built binary, against the local control
// plane (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok),
// a real Prometheus and the mesh simulator. Every scenario gets its own
// namespace and its own canaryd process, so scenarios run in parallel.
package e2e

import (
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
	os.Exit(testenv.Main(m.Run, testenv.Options{
		Name:    "e2e",
		Canaryd: &testenv.Build{},
		Sim:     meshsim.Config{Seed: 1},
		Progress: func(e *testenv.Env, s testenv.Step, took time.Duration) {
			if s == testenv.ClusterUp {
				fmt.Fprintf(os.Stderr, "e2e: cluster up in %s (kubeconfig %s, Prometheus %s)\n", took.Round(time.Millisecond), e.Cluster.Kubeconfig, e.Cluster.Prometheus.URL)
			}
		},
	}, func(e *testenv.Env, skip string) {
		env.skip = skip
		if e != nil {
			env.cluster, env.sim, env.client, env.dyn, env.canaryd, env.dir = e.Cluster, e.Sim, e.Client, e.Dyn, e.Canaryd, e.Dir
		}
	}))
}
