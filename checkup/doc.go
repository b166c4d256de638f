// Package checkup answers one question before anyone waits on a rollout:
// can canaryd work in this cluster, with this configuration? It is shared by
// `canaryd check` (run with canaryd's own flags and identity) and
// `kubectl canary check` (run by a person).
//
// Each check is a line a person can act on: ✔ when it holds, ‼ when it is
// worth knowing but does not stop canaryd (a namespace without Linkerd
// injection, an opted-in Deployment with no metrics yet), ✘ when rollouts
// cannot work as configured, each ‼ and ✘ with a hint saying how to fix it.
// A Report with any ✘ is a failure (non-zero exit code).
//
// What canaryd needs is derived from what package kube does: the verbs it
// uses on each resource (rbac.go names the code each comes from), the
// routing resources its routers write, the Prometheus queries package
// analysis runs.
//
// It must never change anything in the cluster or in Prometheus: every
// check is a read, a discovery call or an access review.
package checkup
