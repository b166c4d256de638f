// Package helm proves how canaryd is packaged and installed: the Helm chart
// in charts/canaryd (lint, rendering, values schema, validation of every
// rendered object against the real API server's schemas), the chart's RBAC
// (canaryd, run as the chart's ServiceAccount, through a full rollout on the
// local control plane, and refused what it must not do), and the container
// image's build (the Dockerfile linted, the same static binary built).
//
// Everything runs offline once test/bootstrap.sh has run: helm comes from
// its cache; kubeconform, the Dockerfile linter and the Prometheus
// Operator's CRDs come from the Go module cache (the Go proxy is asked once,
// then never again); kubeconform's schemas are generated from the local API
// server's OpenAPI document instead of being downloaded.
//
// It must never touch anything outside its own temporary directories, its
// own control plane and the tools cache ($CANARYD_CACHE).
package helm
