#!/usr/bin/env bash
# Shared settings for the hack/ scripts. Source it; do not run it.

# Versions of everything the local cluster is built from.
K8S_VERSION=${K8S_VERSION:-v1.33.13}
MULTUS_VERSION=${MULTUS_VERSION:-v4.3.0}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}

# Built binaries live outside the repo, keyed by version, so later runs reuse them.
NETPLUG_CACHE=${NETPLUG_CACHE:-/var/cache/netplug}
BIN_DIR=${BIN_DIR:-$NETPLUG_CACHE/bin/k8s-$K8S_VERSION-multus-$MULTUS_VERSION-crictl-$CRICTL_VERSION}

# Cluster state (etcd data, containerd root, pki, logs) lives here; cluster-down removes it.
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/netplug-e2e}
NODE_NAME=${NODE_NAME:-vm}

# Images built from files by hack/images/build-local-images.sh (no registry); test pods use BUSYBOX_IMAGE.
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/netplug/pause:1.0}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-localhost/netplug/busybox:1.35}

# The version-matched kubectl/crictl we build win over whatever else is on PATH; Go may live outside it.
PATH=$BIN_DIR:$PATH:/usr/local/go/bin
export PATH

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
