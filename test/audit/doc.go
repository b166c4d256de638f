// Package audit watches one canaryd-managed app from the outside, the way a
// traffic-safety reviewer would, and records every breach of DESIGN.md's
// invariants that can be seen from the API server:
//
//   - a backend with weight > 0 and no ready endpoint (traffic sent to the void);
//   - split weights that do not sum to the total;
//   - a step applied sooner than the interval after the previous one (from the
//     split's weights and from the status annotation's stepStartedAt);
//   - a step repeated or skipped within one rollout (status.step going back or
//     jumping, or the canary weight falling without a rollback);
//   - a revision that failed being promoted without a retry, promote or
//     skip-analysis command in between.
//
// An Auditor samples the TrafficSplit, the backends' EndpointSlices and the
// Deployment every 100 ms. Reading them is not atomic, so to never accuse
// canaryd of a race it did not lose, endpoints are read both before and after
// the split, and a backend counts as empty only if both reads found it empty.
// A sample the API server could not answer is not a routing fact: it is
// counted as blind, never as a violation.
//
// The rules themselves (Rules) are pure functions of the samples, so they are
// table-tested without a cluster; Start adds the polling. The e2e and chaos
// suites share it.
//
// It must never write to the cluster, and never fail a test by itself: it
// reports, the caller decides.
package audit
