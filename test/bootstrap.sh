#!/usr/bin/env bash
# bootstrap.sh installs or builds everything the local control-plane harness (test/cluster) needs,
# and skips whatever is already in place. Safe to run again and again.
#
#   etcd-server, prometheus       Debian packages (apt-get; run as root or with sudo available)
#   kube-apiserver, kube-controller-manager, kube-scheduler v1.33.13
#                                 built from test/tools/k8s into $CANARYD_CACHE/k8s-v1.33.13/bin
#   kwok v0.8.0 + its stages      $CANARYD_CACHE/kwok-v0.8.0/{bin,stages}
#   helm v3.22.0                  $CANARYD_CACHE/helm-v3.22.0/bin
#
# CANARYD_CACHE defaults to ~/.cache/canaryd. Nothing here starts a process that outlives the script.
set -euo pipefail

K8S_VERSION=v1.33.13
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CANARYD_CACHE:-$HOME/.cache/canaryd}"

die() {
	echo "bootstrap: FAILED: $*" >&2
	exit 1
}
say() { echo "bootstrap: $*"; }

# step NAME CMD...: runs one step and prints how long it took.
step() {
	local name=$1
	shift
	local t0=$SECONDS
	"$@" || die "$name (see the output above)"
	say "$name: done in $((SECONDS - t0))s"
}

need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH; $2"
}

need go "install Go (the version in go.mod) first"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

apt_packages() {
	local missing=()
	[[ -x /usr/bin/etcd ]] || missing+=(etcd-server)
	[[ -x /usr/bin/prometheus ]] || missing+=(prometheus)
	if [[ ${#missing[@]} -eq 0 ]]; then
		say "apt: etcd-server and prometheus already installed, skipped"
		return 0
	fi
	need apt-get "this script installs ${missing[*]} with apt-get (Debian/Ubuntu); install them by hand elsewhere"
	if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
		echo "installing ${missing[*]} needs root: run this script as root or install sudo" >&2
		return 1
	fi
	say "apt: installing ${missing[*]}"
	# The package lists are fetched only when apt does not know the packages yet.
	local p
	for p in "${missing[@]}"; do
		if ! apt-cache show "$p" >/dev/null 2>&1; then
			"${SUDO[@]}" apt-get update || return 1
			break
		fi
	done
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${missing[@]}" || return 1
	# The Debian packages enable system services; the harness starts its own processes instead.
	if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		"${SUDO[@]}" systemctl disable --now etcd prometheus >/dev/null 2>&1 || true
	fi
	[[ -x /usr/bin/etcd && -x /usr/bin/prometheus ]] || {
		echo "apt-get finished but /usr/bin/etcd or /usr/bin/prometheus is still missing" >&2
		return 1
	}
}

k8s_binaries() {
	local bin="$CACHE/k8s-$K8S_VERSION/bin" ok=1 b
	for b in kube-apiserver kube-controller-manager kube-scheduler; do
		if [[ ! -x "$bin/$b" ]] || [[ "$("$bin/$b" --version 2>/dev/null)" != "Kubernetes $K8S_VERSION" ]]; then
			ok=0
		fi
	done
	if [[ $ok -eq 1 ]]; then
		say "k8s: $K8S_VERSION binaries present in $bin, skipped"
		return 0
	fi
	say "k8s: building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION (~8 min cold)"
	mkdir -p "$bin"
	(
		cd "$REPO_ROOT/test/tools/k8s" &&
			CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=33 \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
				-o "$bin/" \
				k8s.io/kubernetes/cmd/kube-apiserver \
				k8s.io/kubernetes/cmd/kube-controller-manager \
				k8s.io/kubernetes/cmd/kube-scheduler
	) || return 1
	for b in kube-apiserver kube-controller-manager kube-scheduler; do
		[[ "$("$bin/$b" --version)" == "Kubernetes $K8S_VERSION" ]] || {
			echo "$bin/$b --version does not say Kubernetes $K8S_VERSION" >&2
			return 1
		}
	done
}

kwok() {
	local dir="$CACHE/kwok-$KWOK_VERSION"
	if [[ -x "$dir/bin/kwok" ]] && "$dir/bin/kwok" --version 2>/dev/null | grep -q "$KWOK_VERSION" &&
		[[ -f "$dir/stages/pod/fast/pod-ready.yaml" ]]; then
		say "kwok: $KWOK_VERSION present in $dir, skipped"
		return 0
	fi
	say "kwok: building $KWOK_VERSION"
	mkdir -p "$dir/bin"
	(cd "$dir" && GOBIN="$dir/bin" CGO_ENABLED=0 go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") || return 1
	# The Stage manifests ship in the module (kustomize/stage); copy them without their test data.
	local mod
	mod="$(cd "$dir" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -n "$mod" && -d "$mod/kustomize/stage" ]] || {
		echo "cannot find kustomize/stage in the sigs.k8s.io/kwok@$KWOK_VERSION module (dir: '$mod')" >&2
		return 1
	}
	rm -rf "$dir/stages.tmp"
	mkdir -p "$dir/stages.tmp"
	(cd "$mod/kustomize/stage" && find . -name '*.yaml' -not -path '*/testdata/*' -not -name kustomization.yaml |
		while read -r f; do
			mkdir -p "$dir/stages.tmp/$(dirname "$f")" && cp "$f" "$dir/stages.tmp/$f" && chmod u+w "$dir/stages.tmp/$f"
		done) || return 1
	rm -rf "$dir/stages" && mv "$dir/stages.tmp" "$dir/stages"
	"$dir/bin/kwok" --version | grep -q "$KWOK_VERSION" || {
		echo "$dir/bin/kwok --version does not mention $KWOK_VERSION" >&2
		return 1
	}
}

helm() {
	local dir="$CACHE/helm-$HELM_VERSION"
	if [[ -x "$dir/bin/helm" ]] && "$dir/bin/helm" version --short 2>/dev/null | grep -q "$HELM_VERSION"; then
		say "helm: $HELM_VERSION present in $dir, skipped"
		return 0
	fi
	say "helm: building $HELM_VERSION"
	mkdir -p "$dir/bin"
	# helm's version string comes from ldflags; without them `helm version` prints a placeholder.
	(cd "$dir" && GOBIN="$dir/bin" CGO_ENABLED=0 go install \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION") || return 1
	"$dir/bin/helm" version --short | grep -q "$HELM_VERSION" || {
		echo "$dir/bin/helm version does not mention $HELM_VERSION: $("$dir/bin/helm" version --short 2>&1)" >&2
		return 1
	}
}

T0=$SECONDS
say "cache: $CACHE"
mkdir -p "$CACHE" || die "cannot create $CACHE"
step "apt packages" apt_packages
step "kubernetes $K8S_VERSION binaries" k8s_binaries
step "kwok $KWOK_VERSION" kwok
step "helm $HELM_VERSION" helm
say "all done in $((SECONDS - T0))s; binaries under $CACHE"
