#!/usr/bin/env bash
# Installs what the local cluster runs on: Debian packages (only the missing ones; `apt-get update`
# only when something is missing) and the binaries built through the Go module proxy (kube-apiserver,
# kubelet, kube-controller-manager, kube-scheduler, kubectl, containerd 2, crictl, Multus), which
# hack/build/binaries.sh keeps in a version-keyed cache so only the first run builds them.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# etcd-server: etcd; runc: the OCI runtime under containerd (Debian's containerd too, for
# CONTAINERD_VERSION=system); containernetworking-plugins: bridge, macvlan, host-local...;
# busybox-static: the test image; util-linux: setsid/nsenter/mount; file: the static binary check in
# hack/build/image.sh; the rest are used by the scripts themselves.
PACKAGES=(etcd-server runc containernetworking-plugins iproute2 busybox-static
          jq openssl curl util-linux ca-certificates file)
[ "$CONTAINERD_VERSION" != system ] || PACKAGES+=(containerd)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

[ "$(id -u)" = 0 ] || die "the local cluster needs root (network namespaces, mounts, cgroups)"
command -v dpkg-query >/dev/null || die "needs a Debian-based machine (dpkg/apt-get)"

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || die "Go is needed to build the cluster binaries (looked in PATH and /usr/local/go/bin)"
"$HACK/build/binaries.sh"
