// Package meshsim stands in for Linkerd's data plane in the local control plane used by canaryd's tests and
// demo, where every pod is fake (kwok) and nothing listens on pod or Service IPs.
//
// It watches the API server (Services, EndpointSlices, Pods, ReplicaSets, SMI TrafficSplits and Gateway API /
// policy.linkerd.io HTTPRoutes), generates requests for each apex Service at a configured rate, routes each
// request the way Linkerd would (split weights, HTTPRoute header matches, round robin over ready endpoints),
// decides its outcome from the chosen pod's annotations, and exposes per-pod counters in the exact Linkerd
// 2.18+ inbound proxy format so that a real Prometheus can scrape them through a file_sd targets file.
//
// The simulator must never dial a pod or Service IP: the cluster's 10.x addresses are fiction, and a request
// to one would either hang or reach something that is not ours. Its only network peer is the API server; its
// only listener is a loopback HTTP server.
//
// # Annotations read
//
// On an apex Service:
//   - meshsim/rps: "20" — requests per second sent to the Service (default Config.DefaultRPS; "0" = none).
//     The annotation also makes a Service an apex when no split or route names it.
//   - meshsim/headers: "x-canary=always:0.1" — request classes that carry headers, for header-matched routes.
//     Classes are separated by ",", headers within a class by "&", and the share follows the last ":".
//     "x-canary=always:0.1,x-user=beta&x-region=eu:0.05" means 10 % of requests carry x-canary: always, 5 %
//     carry both x-user: beta and x-region: eu, and the remaining 85 % carry none. Shares are exclusive and
//     must sum to at most 1.
//
// On a pod (kwok pods copy their Deployment's template, so "deploying a bad image" means changing these in
// the template):
//   - meshsim/error-rate: "0.05" — share of requests answered with the error status (default 0).
//   - meshsim/status-code: "503" — the error status (default 500). Linkerd classifies only 5xx as failure, so
//     a 4xx here counts as success in response_total, exactly as the real proxy would count it.
//   - meshsim/latency-ms: "40" — median latency in milliseconds (default 10).
//   - meshsim/latency-p99-ms: "200" — p99 latency (default 3 × the median).
//
// Latency is log-normal: latency = median × exp(σ·Z), Z standard normal, σ = ln(p99/median) / 2.3263 (2.3263 is
// the standard normal 99th percentile). With the default p99 = 3 × median, σ ≈ 0.472, so a 10 ms median gives a
// mean of about 11.2 ms, a p90 of about 18.3 ms and a p99 of 30 ms: a long right tail, never negative.
//
// # Routing rules simulated
//
// A TrafficSplit on an apex wins over HTTPRoutes on it (linkerd-smi turns it into ServiceProfile dstOverrides,
// which override routes). Among several TrafficSplits or within HTTPRoutes, the oldest object wins ties, as in
// Gateway API. A route rule is chosen by Gateway API precedence (exact path, longest prefix, method, most header
// matches, then the oldest route and the first rule); simulated requests are "GET /". A rule without
// backendRefs sends to its parent Service. Route status (Accepted) is ignored: there is no policy controller.
package meshsim
