// Package cluster runs a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler), kwok fake nodes and optionally Prometheus as plain processes on 127.0.0.1, for canaryd's
// system tests, end-to-end suites and benchmarks. There is no kubelet and no container runtime: kwok marks
// pods Running and Ready and gives them fake pod IPs.
//
// What it must never do:
//   - listen on or connect to anything but loopback; pod and Service IPs (10.x) are fake and nothing answers there;
//   - leave a process behind: every child runs in its own process group with a parent-death signal, and
//     Stop kills and waits for all of them;
//   - build or download anything: test/bootstrap.sh does that, and Start only explains how to run it;
//   - know about canaryd itself: it provides a cluster, not the system under test.
package cluster
