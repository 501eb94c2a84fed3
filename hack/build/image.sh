#!/usr/bin/env bash
# Build the netplug-controller image IMAGE:TAG without a registry or a container engine, and
# import it into the local cluster's containerd when that cluster is up.
#
# The image is what images/Dockerfile builds: an empty base, images/rootfs/ and the static binary
# at /netplug-controller. hack/build/images/mkimage.sh writes it as a docker-archive ("docker save"
# format) tarball, which `ctr images import`, `docker load` and `podman load` all read; tar,
# sha256sum and jq make it, so this needs no extra Go module, tool or engine.
#
# Usage: hack/build/image.sh [--no-import]
# Env:   IMAGE, TAG     image reference (default localhost/netplug/netplug-controller:dev)
#        IMAGE_TAR      output tarball (default _out/netplug-controller.tar)
#        BINARY         use this prebuilt static binary instead of building ./cmd/netplug-controller
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGE=${IMAGE:-localhost/netplug/netplug-controller}
TAG=${TAG:-dev}
IMAGE_TAR=${IMAGE_TAR:-$ROOT/_out/netplug-controller.tar}
REF=$IMAGE:$TAG
import=1
case "${1:-}" in
"") ;;
--no-import) import=0 ;;
*) die "usage: $0 [--no-import]" ;;
esac

for tool in go jq sha256sum tar file; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
cd "$ROOT"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"
cp -r images/rootfs/. "$rootfs/"
# Modes from a checkout depend on its umask; the image should not.
chmod -R u=rwX,go=rX "$rootfs"

# 1. The binary: static, so that it runs on an empty base.
if [ -n "${BINARY:-}" ]; then
  log "using prebuilt binary $BINARY"
  cp "$BINARY" "$rootfs/netplug-controller"
else
  log "building ./cmd/netplug-controller (static)"
  CGO_ENABLED=0 GOOS=linux \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$rootfs/netplug-controller" ./cmd/netplug-controller
fi
chmod 0755 "$rootfs/netplug-controller"
file -b "$rootfs/netplug-controller" | grep -q 'statically linked' ||
  die "the binary is not statically linked: $(file -b "$rootfs/netplug-controller")"

# 2. Pack it: one layer, docker-archive format, same bytes for the same inputs.
mkdir -p "$(dirname "$IMAGE_TAR")"
"$HACK/build/images/mkimage.sh" "$REF" "$rootfs" "$IMAGE_TAR" '["/netplug-controller"]' >&2
log "built $IMAGE_TAR: $REF ($(du -h "$IMAGE_TAR" | cut -f1))"

# 3. Import into the local cluster's containerd, if there is one to import into.
[ "$import" = 1 ] || exit 0
if [ -f "$CLUSTER_DIR/env" ]; then
  # shellcheck disable=SC1091
  source "$CLUSTER_DIR/env"
fi
if [ -z "${CRI_SOCKET:-}" ] || ! command -v ctr >/dev/null ||
  ! timeout 10 ctr -a "$CRI_SOCKET" version >/dev/null 2>&1; then
  log "no local cluster is running (no containerd at ${CRI_SOCKET:-\$CRI_SOCKET}): built the tarball only"
  log "import it later with: ctr -a <containerd.sock> -n k8s.io images import $IMAGE_TAR"
  exit 0
fi
timeout 120 ctr -a "$CRI_SOCKET" -n k8s.io images import "$IMAGE_TAR" >/dev/null
timeout 10 ctr -a "$CRI_SOCKET" -n k8s.io images ls "name==$REF" | grep -q "$REF" ||
  die "ctr import finished but containerd does not list $REF"
log "imported $REF into containerd at $CRI_SOCKET"
