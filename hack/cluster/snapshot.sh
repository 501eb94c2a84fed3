#!/usr/bin/env bash
# Prints what the local cluster could leave on the host, in a stable order, so that a snapshot
# taken before `make cluster-up` and one after `make cluster-down` can be compared with diff:
# the cluster's processes (by name), mounts, links, network namespaces, cgroups, directories where
# the components keep state, sysctls the cluster touches, iptables rules and listening TCP ports.
#
# usage: hack/cluster/snapshot.sh >before.txt; make cluster-up ...; make cluster-down
#        hack/cluster/snapshot.sh >after.txt; diff before.txt after.txt
set -u   # a section with nothing to list is not an error
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"

section() { printf '## %s\n' "$1"; }

section "processes (cluster components by name; zombies not counted)"
ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | awk '$1 ~ /^(etcd|kube-apiserver|kube-controller|kube-scheduler|kubelet|containerd|containerd-shim|containerd-shim-runc-v2|runc|multus-daemon|multus-shim|pause|netplug-control)$/ {print $1}' | sort | uniq -c
section "mounts (mount point, type)"
awk '{print $5, $(NF-2)}' /proc/self/mountinfo | sort
section "links"
ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort
section "network namespaces"
ip netns list 2>/dev/null | sort
{ ls -A /run/netns 2>/dev/null || true; } | sort
section "cgroups (three levels)"
find /sys/fs/cgroup -maxdepth 3 -type d 2>/dev/null | sort
section "state directories"
for d in /run /var/lib /var/log /etc /opt /var/lib/kubelet /run/containerd /var/lib/containerd /etc/cdi /var/run/cdi /etc/nri /opt/nri "$(dirname "$CLUSTER_DIR")"; do
  [ -d "$d" ] || { echo "$d: absent"; continue; }
  echo "$d: $(find "$d" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')"
done
section "sysctls"
for s in "${TOUCHED_SYSCTLS[@]}" net.ipv4.conf.all.forwarding net.bridge.bridge-nf-call-iptables; do
  [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(sysctl -n "$s")"
done
section "iptables"
{ iptables-save 2>/dev/null || true; } | grep -v '^#' | sed 's/\[[0-9:]*\]//' | sort
section "listening TCP ports"
ss -Hltn | awk '{print $4}' | sort -u
