#!/usr/bin/env bash
# The one preamble of every hack/ script: source it first, as
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"     (from hack/<group>/<script>.sh)
# It sets ROOT (the repo) and HACK (this directory), the versions, the cache and cluster paths,
# PATH, and the log/die helpers. Do not run it.
# shellcheck disable=SC2034 # the settings below are used by the scripts that source this file

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HACK")

# Versions of everything the local cluster is built from; each is one variable.
# CONTAINERD_VERSION=system uses the distribution's containerd (Debian 12: 1.6.20) instead of a
# build, for the compatibility run with an older Kubernetes:
#   K8S_VERSION=v1.33.13 CONTAINERD_VERSION=system make e2e
K8S_VERSION=${K8S_VERSION:-v1.37.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
MULTUS_VERSION=${MULTUS_VERSION:-v4.3.0}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}

# Built binaries live outside the repo, one directory per component and version, so later runs
# (and other version combinations) reuse them. BIN_DIR holds symlinks to one combination.
NETPLUG_CACHE=${NETPLUG_CACHE:-/var/cache/netplug}
BIN_DIR=${BIN_DIR:-$NETPLUG_CACHE/bin/k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-multus-$MULTUS_VERSION-crictl-$CRICTL_VERSION}

# Cluster state (etcd data, containerd root, pki, logs) lives here; cluster-down removes it.
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/netplug-e2e}
NODE_NAME=${NODE_NAME:-vm}

# Images built from files by hack/build/images/build-local-images.sh (no registry); test pods use BUSYBOX_IMAGE.
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/netplug/pause:1.0}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-localhost/netplug/busybox:1.35}

# The version-matched kubectl/crictl/containerd we build win over whatever else is on PATH; Go may live outside it.
PATH=$BIN_DIR:$PATH:/usr/local/go/bin
export PATH

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# version_ge A B: true if version A (vX.Y.Z) is at least B.
version_ge() { [ "$(printf '%s\n%s\n' "${1#v}" "${2#v}" | sort -V | head -n1)" = "${2#v}" ]; }
