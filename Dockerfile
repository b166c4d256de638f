# syntax=docker/dockerfile:1.7
#
# canaryd's image: one static binary on distroless's "static" base, which has no shell, no package manager
# and no libc; it runs as uid 65532. Build (CI passes the version):
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/canaryd/canaryd:<tag> .
#
# The build stage runs on the builder's platform and cross-compiles (CGO is off), so multi-arch images need
# no emulation: docker buildx build --platform linux/amd64,linux/arm64 …
# test/helm's TestDockerfile* lint this file and build the same binary with the same flags.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# Static (no cgo, so no libc to match at run time), reproducible paths (-trimpath), no symbol tables (-s -w),
# and the version `canaryd version` prints.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.Version=${VERSION}" -o /out/canaryd ./cmd/canaryd

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/canaryd /canaryd
# Numeric, so that the kubelet can verify runAsNonRoot without /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/canaryd"]
CMD ["run"]
