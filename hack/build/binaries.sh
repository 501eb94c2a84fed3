#!/usr/bin/env bash
# Builds the cluster's binaries through the Go module proxy, each into its own version-keyed cache
# directory under $NETPLUG_CACHE/bin, and links one combination into $BIN_DIR:
#   kubernetes-$K8S_VERSION:        kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kubectl
#   containerd-$CONTAINERD_VERSION: containerd, containerd-shim-runc-v2, ctr (skipped for "system")
#   crictl-$CRICTL_VERSION:         crictl
#   multus-$MULTUS_VERSION:         multus-daemon, multus-shim
# A complete directory is reused as is.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CACHE_BIN=$NETPLUG_CACHE/bin
K8S_DIR=$CACHE_BIN/kubernetes-$K8S_VERSION
CONTAINERD_DIR=$CACHE_BIN/containerd-$CONTAINERD_VERSION
CRICTL_DIR=$CACHE_BIN/crictl-$CRICTL_VERSION
MULTUS_DIR=$CACHE_BIN/multus-$MULTUS_VERSION
K8S_BINS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl)
CONTAINERD_BINS=(containerd containerd-shim-runc-v2 ctr)

complete() { # complete DIR BIN...: every binary is there
  local d=$1 b
  shift
  for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

link_all() {
  local b
  mkdir -p "$BIN_DIR"
  for b in "${K8S_BINS[@]}"; do ln -sfn "$K8S_DIR/$b" "$BIN_DIR/$b"; done
  ln -sfn "$CRICTL_DIR/crictl" "$BIN_DIR/crictl"
  for b in multus-daemon multus-shim; do ln -sfn "$MULTUS_DIR/$b" "$BIN_DIR/$b"; done
  if [ "$CONTAINERD_VERSION" != system ]; then
    for b in "${CONTAINERD_BINS[@]}"; do ln -sfn "$CONTAINERD_DIR/$b" "$BIN_DIR/$b"; done
  fi
}

if complete "$K8S_DIR" "${K8S_BINS[@]}" && complete "$CRICTL_DIR" crictl &&
   complete "$MULTUS_DIR" multus-daemon multus-shim &&
   { [ "$CONTAINERD_VERSION" = system ] || complete "$CONTAINERD_DIR" "${CONTAINERD_BINS[@]}"; }; then
  link_all
  log "binaries cached in $BIN_DIR"
  exit 0
fi

mkdir -p "$NETPLUG_CACHE/build"
W=$(mktemp -d "$NETPLUG_CACHE/build/work.XXXXXX")
trap 'rm -rf "$W"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod
T0=$(date +%s)
t() { log "[$(( $(date +%s) - T0 ))s] $*"; }

# go_lines GOMOD: the go and godebug directives of a module's go.mod (single line or block form), so a
# scratch module builds with the language version and GODEBUG defaults its dependency was released with.
go_lines() {
  sed -n -e '/^go [0-9]/p' -e '/^godebug [^(]/p' -e '/^godebug (/,/^)/p' "$1"
}

# build_into DIR NAME PKG LDFLAGS: go build PKG to DIR/NAME, atomically.
build_into() {
  mkdir -p "$1"
  go build -trimpath -ldflags "$4" -o "$1/$2.tmp" "$3"
  mv "$1/$2.tmp" "$1/$2"
  t "built $2"
}

# Kubernetes: a scratch module that requires k8s.io/kubernetes and replaces each staging module
# (k8s.io/api, ..., and from 1.36 k8s.io/cri-streaming and k8s.io/streaming) with its published
# version: the same replace list k8s.io/kubernetes itself uses, pointed at v0.<minor>.<patch>.
if ! complete "$K8S_DIR" "${K8S_BINS[@]}"; then
  K=${K8S_VERSION#v}; S=0.${K#1.}
  mkdir -p "$W/k8s" && cd "$W/k8s"
  go mod download "k8s.io/kubernetes@$K8S_VERSION"
  KGOMOD=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
  { printf 'module netplugbuild/k8s\n\n'; go_lines "$KGOMOD"
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n '/^replace (/,/^)/p' "$KGOMOD" | grep '=> \./staging/' | awk -v s="$S" '{print "\t" $1 " => " $1 " v" s}'
    echo ")"; } > go.mod
  cat > tools.go <<'G'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
G
  go mod tidy; t "k8s module ready ($(grep -E '^go ' go.mod))"
  minor=$(echo "$K" | cut -d. -f2)
  LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for c in "${K8S_BINS[@]}"; do
    [ -x "$K8S_DIR/$c" ] || build_into "$K8S_DIR" "$c" "k8s.io/kubernetes/cmd/$c" "$LDF"
  done
fi

# containerd 2: `go install` refuses a module with exclude directives, so a scratch module requires
# it, copies its exclude block (if any) and go/godebug lines, and builds the commands from there.
if [ "$CONTAINERD_VERSION" != system ] && ! complete "$CONTAINERD_DIR" "${CONTAINERD_BINS[@]}"; then
  C=github.com/containerd/containerd/v2
  mkdir -p "$W/containerd" && cd "$W/containerd"
  go mod download "$C@$CONTAINERD_VERSION"
  CGOMOD=$(go env GOMODCACHE)/cache/download/$C/@v/$CONTAINERD_VERSION.mod
  { printf 'module netplugbuild/containerd\n\n'; go_lines "$CGOMOD"
    printf '\nrequire %s %s\n\n' "$C" "$CONTAINERD_VERSION"
    sed -n -e '/^exclude [^(]/p' -e '/^exclude (/,/^)/p' "$CGOMOD"; } > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/cmd/containerd"\n\t_ "%s/cmd/containerd-shim-runc-v2"\n\t_ "%s/cmd/ctr"\n)\n' "$C" "$C" "$C" > tools.go
  go mod tidy; t "containerd module ready"
  LDF="-s -w -X $C/version.Version=$CONTAINERD_VERSION -X $C/version.Revision=$CONTAINERD_VERSION -X $C/version.Package=$C"
  for c in "${CONTAINERD_BINS[@]}"; do
    [ -x "$CONTAINERD_DIR/$c" ] || build_into "$CONTAINERD_DIR" "$c" "$C/cmd/$c" "$LDF"
  done
fi

# crictl: the proxy serves v1.34.0 but not its checksum in the sum database, and not its pinned
# k8s.io release candidates, so those are bumped to a release.
if ! complete "$CRICTL_DIR" crictl; then
  mkdir -p "$W/crictl" && cd "$W/crictl"
  printf 'module netplugbuild/crictl\n\ngo 1.24.1\n' > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/cri-tools/cmd/crictl"\n' > tools.go
  export GONOSUMDB=sigs.k8s.io/cri-tools
  go get "sigs.k8s.io/cri-tools@$CRICTL_VERSION"
  KV=v0.34.13
  go get k8s.io/api@$KV k8s.io/apimachinery@$KV k8s.io/client-go@$KV k8s.io/cri-api@$KV k8s.io/cri-client@$KV \
    k8s.io/kubectl@$KV k8s.io/kubelet@$KV k8s.io/cli-runtime@$KV k8s.io/component-base@$KV
  go mod tidy
  build_into "$CRICTL_DIR" crictl sigs.k8s.io/cri-tools/cmd/crictl "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  unset GONOSUMDB
fi

# Multus thick daemon + shim (the github.com module path is refused by the proxy; gopkg.in is served).
if ! complete "$MULTUS_DIR" multus-daemon multus-shim; then
  M=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
  mkdir -p "$W/multus" && cd "$W/multus"
  printf 'module netplugbuild/multus\n\ngo 1.25.0\n' > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/cmd/multus-daemon"\n\t_ "%s/cmd/multus-shim"\n)\n' "$M" "$M" > tools.go
  go get "$M@$MULTUS_VERSION"
  go mod tidy
  for c in multus-daemon multus-shim; do
    [ -x "$MULTUS_DIR/$c" ] || build_into "$MULTUS_DIR" "$c" "$M/cmd/$c" "-s -w -X $M/pkg/multus.version=$MULTUS_VERSION -X $M/pkg/multus.commit=$MULTUS_VERSION"
  done
fi
link_all
t "all binaries in $BIN_DIR"
