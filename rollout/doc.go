// Package rollout decides what canaryd does next for one opted-in Deployment.
//
// It is the whole of canaryd's judgement and none of its effects: given an
// Observed snapshot (the Deployment, its ReplicaSets, the canary, the Services'
// ready endpoints, the live split weight, the status annotation, the latest
// analysis verdict and the time), Decide returns the next Status, the Desired
// state of every object canaryd owns, the Events to raise and when to look
// again. The kube package gathers the snapshot and applies the decision.
//
// It must never import client-go, read a clock, sleep, start a goroutine or
// keep state between calls: every decision is a function of its input, so the
// same snapshot always yields the same decision, a restarted controller
// continues where the last one stopped, and every path is a table test.
//
// Weights are in milli (0..1000) throughout; routers convert them to the total
// their API uses (1000 for TrafficSplit v1alpha1, 100 otherwise).
package rollout
