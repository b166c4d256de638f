// Package chaos proves that canaryd is never the outage: it runs the built
// canaryd binary against the local control plane (test/cluster), a real
// Prometheus and the mesh simulator, breaks things on purpose, and lets the
// traffic auditor (test/audit) and the mesh simulator's counters say whether
// any request was routed to the void or any step was taken too early, twice
// or not at all.
//
// Scenarios, each a test:
//
//   - canaryd SIGKILLed at random moments of good and bad rollouts and
//     restarted (TestKilling…);
//   - Prometheus stopped mid-rollout, then kube-apiserver and etcd
//     restarted (TestOutages…);
//   - API server writes failed, answers lost and requests delayed by
//     test/faultproxy (TestAPIServerFaults…);
//   - two replicas with leader election, the leader killed or partitioned
//     from the API server (TestLeader…);
//   - a person editing the Deployment mid-rollout (TestEdit…);
//   - hostile annotation values (TestHostile…).
//
// TestTheAuditorCatchesPlantedViolations proves the auditor reports what it
// must on the real API server, so that its zeros mean something.
//
// `go test ./test/chaos` is the short run CI makes (a few trials each, a
// 20 s Prometheus outage); `go test ./test/chaos -args -full` (make chaos)
// is the full one: 50 killed rollouts, a 5 minute outage. Both print a table
// of scenario, trials, converged, violations and worst recovery time, and
// fail on any violation.
//
// It must never connect to a 10.x address (pod and Service IPs are fiction)
// and never leave a process behind: canaryd runs with a parent-death signal
// and every scenario stops what it started.
package chaos
