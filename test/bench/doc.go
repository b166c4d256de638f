// Package bench measures canaryd where users feel it: how fast a bad release
// stops taking traffic (against the information limit of Wald's sequential
// test), and whether one canaryd process keeps up with thousands of managed
// Deployments. Everything runs for real on this machine: the built canaryd
// binary, the local control plane (test/cluster: etcd, kube-apiserver,
// controller-manager, scheduler, kwok), a real Prometheus scraping at 1 s and
// the mesh simulator (test/meshsim) sending the traffic.
//
// `go test ./test/bench` runs a smoke (N = 50 Deployments, 3 trials of each
// detection scenario) that checks the suite works end to end and produces
// sane numbers: a bad canary was rolled back, a good one promoted, every
// rollout converged, the metrics add up. It asserts nothing about speed.
// `make bench` (CANARYD_BENCH_FULL=1 or -bench-full) runs the full suite and
// writes test/bench/report/REPORT.md with PNG plots; it takes 20–30 minutes.
//
// What it must never do: connect to anything but loopback (pod and Service
// IPs are fake), assert a timing in the smoke run, or leave a process behind
// (canaryd runs with a parent-death signal and is stopped by every path).
//
// Figures are medians of repeated runs on one shared 2-core machine; they are
// for comparing within one report, not across machines.
package bench
