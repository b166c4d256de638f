// Package cluster runs a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler), kwok fake nodes and optionally Prometheus as plain processes on 127.0.0.1, for canaryd's
// system tests, end-to-end suites and benchmarks. There is no kubelet and no container runtime: kwok marks
// pods Running and Ready at once and gives them fake, unique IPs from 10.244.0.0/16.
//
// Typical use, one cluster per test package:
//
//	func TestMain(m *testing.M) {
//		c, err := cluster.Start(ctx, cluster.Options{Prometheus: true})
//		// c.RESTConfig (admin), c.Kubeconfig, c.Prometheus.URL, c.MeshTargetsFile ...
//		code := m.Run()
//		c.Stop()
//		os.Exit(code)
//	}
//
// The binaries come from test/bootstrap.sh ($CANARYD_CACHE, /usr/bin); each process logs to Dir/logs.
// For manual work, `go run ./test/cluster/cmd/cluster up --prometheus` keeps one running until Ctrl-C.
//
// What it must never do:
//   - listen on or connect to anything but loopback; pod and Service IPs (10.x) are fake and nothing answers there;
//   - leave a process behind: every child runs in its own process group with a parent-death signal, and
//     Stop kills and waits for all of them;
//   - build or download anything: test/bootstrap.sh does that, and Start only explains how to run it;
//   - know about canaryd itself: it provides a cluster, not the system under test.
package cluster
