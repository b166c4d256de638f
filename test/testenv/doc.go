// Package testenv is the environment the system suites (test/e2e,
// test/chaos, test/helm, test/bench) and the demo share: a work directory,
// canaryd built into it (if asked), the local control plane with Prometheus
// (test/cluster), API clients for it and the mesh simulator (test/meshsim)
// running in this process and feeding Prometheus's targets file.
//
// Typical use, a TestMain whose tests share one Env:
//
//	func TestMain(m *testing.M) {
//		os.Exit(testenv.Main(m.Run, testenv.Options{Name: "e2e", Canaryd: &testenv.Build{}},
//			func(e *testenv.Env, skip string) {
//				// keep e (nil when every test must skip with skip): e.Canaryd (binary),
//				// e.Cluster, e.Client, e.Dyn, e.Sim, e.Dir
//			}))
//	}
//
// A suite that starts the Env lazily (test/helm, after Available) or outside
// a TestMain (test/bench, the demo) calls Start, and Stop when done.
//
// What differs between suites is an Option, not a copy: the simulator's seed
// and settings, the cluster's size, how canaryd is built, where the
// simulator logs.
//
// What it must never do: leave a process behind (Stop waits for the
// simulator and the cluster, and a failed Start stops what it started),
// remove a directory it did not create, or run canaryd: each suite starts
// canaryd its own way, with its own flags, and stops it before Stop.
package testenv
