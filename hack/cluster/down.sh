#!/usr/bin/env bash
# Stops the local cluster started by hack/cluster/up.sh and removes everything it left on the host:
# pods (through CNI DEL, so IPAM and Multus release what they hold), the processes recorded in
# $CLUSTER_DIR/run/*.pid (and nothing else), mounts under $CLUSTER_DIR, the host links the cluster
# owns (see hack/cluster/common.sh: e2ebr0, e2esec0, e2emv0, bridges named np*), kubepods cgroups,
# changed sysctls, the paths outside $CLUSTER_DIR the components create on their own, and finally
# $CLUSTER_DIR itself. Safe to run when nothing is up.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"

T0=$(now_ms)
STEP_START=$T0
case "$CLUSTER_DIR" in
  /*/*) ;;   # an absolute path at least two levels deep: never /, never relative
  *) die "refusing to tear down CLUSTER_DIR=$CLUSTER_DIR" ;;
esac

delete_owned_links() {
  local link
  for link in "${OWNED_LINKS[@]}"; do
    if ip link show "$link" >/dev/null 2>&1; then ip link delete "$link"; fi
  done
  for link in $(ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [[ "$link" == "$OWNED_BRIDGE_PREFIX"* ]] && ip link delete "$link"
  done
  # The device-pool fixtures: veth pairs npdevN/npdpN of the e2e suite, the soak and the demo.
  for link in $(ip -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [[ "$link" == "$OWNED_VETH_PREFIX"* ]] && { ip link delete "$link" 2>/dev/null || true; }
  done
  return 0
}

# delete_pods FIELD_SELECTOR: delete the workloads and pods it selects and wait until the pods are gone
# (grace 1 s; test pods trap TERM).
delete_pods() {
  local selector=(--all-namespaces --field-selector "$1")
  kubectl delete daemonsets,deployments,replicasets,statefulsets,jobs,cronjobs "${selector[@]}" \
    --wait=false >/dev/null 2>&1 || true
  kubectl delete pods "${selector[@]}" --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 ||
    log "some pods did not go away within 60s; removing their sandboxes directly"
}

# remove_sandboxes: stop and remove what the kubelet left while containerd and Multus still run, so
# the CNI DEL of every sandbox happens.
remove_sandboxes() {
  local sandbox
  component_running containerd || return 0
  for sandbox in $(crictl --config "$CRICTL_CONFIG" pods -q 2>/dev/null); do
    crictl --config "$CRICTL_CONFIG" stopp "$sandbox" >/dev/null 2>&1 || log "stopp $sandbox failed"
    crictl --config "$CRICTL_CONFIG" rmp -f "$sandbox" >/dev/null 2>&1 || log "rmp $sandbox failed"
  done
}

# kill_orphaned_tasks: if containerd went away with containers still running, their init processes
# and shims are recorded in containerd's state directory (ours); stop them.
kill_orphaned_tasks() {
  local f
  for f in "$CLUSTER_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid \
           "$CLUSTER_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [ -f "$f" ] || continue
    log "stopping leftover $(basename "$f" .pid) of task $(basename "$(dirname "$f")")"
    stop_pidfiles 5 "$f"
  done
}

# kill_stray_shims: a shim whose sandbox was still being created when containerd stopped has no
# pid file; it is ours if it was started with our containerd's socket as its address.
kill_stray_shims() {
  local pid
  # The shim is Debian's (/usr/bin) with containerd 1.6, ours ($BIN_DIR, a symlink into the cache) with 2.x.
  for pid in $(pgrep -f "^[^ ]*/containerd-shim-runc-v2 .*-address $CLUSTER_DIR/containerd/containerd.sock" || true); do
    log "stopping leftover shim $pid (no pid file)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

mounts_under_cluster_dir() { awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts; }

unmount_all() {
  local m i
  for i in 1 2 3; do
    [ -n "$(mounts_under_cluster_dir)" ] || return 0
    # Deepest first; lazy, since a leftover process may still hold one.
    mounts_under_cluster_dir | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  done
  [ -z "$(mounts_under_cluster_dir)" ]
}

remove_kubepods_cgroups() {
  local d
  # No record means cluster-up never got as far as starting a kubelet: nothing here is ours.
  [ -f "$HOST_STATE_DIR/preexisting-cgroups" ] || return 0
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    if grep -qxF "$d" "$HOST_STATE_DIR/preexisting-cgroups"; then continue; fi
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "$d" ] || log "could not remove cgroup $d (processes still in it?)"
  done
}

restore_host_state() {
  local line p
  if [ -f "$HOST_STATE_DIR/sysctl" ]; then
    while read -r line; do
      [ -z "$line" ] || sysctl -q -w "$line" >/dev/null || log "could not restore sysctl $line"
    done <"$HOST_STATE_DIR/sysctl"
  fi
  if [ -f "$HOST_STATE_DIR/created-paths" ]; then
    while read -r p; do
      # Only the known paths, whatever the file says.
      case " ${HOST_PATHS[*]} " in *" $p "*) rm -rf "$p" ;; esac
    done <"$HOST_STATE_DIR/created-paths"
  fi
}

# ---------------------------------------------------------------------------------------------------
if [ ! -d "$CLUSTER_DIR" ]; then
  kill_stray_shims
  delete_owned_links
  log "no cluster in $CLUSTER_DIR; nothing to tear down"
  exit 0
fi

export KUBECONFIG=$ADMIN_KUBECONFIG
if component_running kubelet && [ -f "$ADMIN_KUBECONFIG" ] && apiserver_ready; then
  # Test pods first, while the netplug controller still runs and can release what it hot-plugged.
  delete_pods 'metadata.namespace!=netplug-system'
  delete_pods 'metadata.namespace=netplug-system'
  step_done "pods deleted"
fi
stop_pidfiles 10 "$RUN_DIR/kubelet.pid"
remove_sandboxes
step_done "kubelet stopped, sandboxes removed"

# Whatever else the e2e suite recorded (e.g. a netplug controller run as a host process) and the
# API clients first, then the apiserver and containerd, then etcd. The apiserver's graceful shutdown
# waits for its own loopback watches; its state is about to be deleted, so it gets little grace.
extras=()
for f in "$RUN_DIR"/*.pid; do
  [ -f "$f" ] || continue
  [[ " ${COMPONENTS[*]} " == *" $(basename "$f" .pid) "* ]] || extras+=("$f")
done
stop_pidfiles 10 "${extras[@]}" "$RUN_DIR"/{multus-daemon,kube-scheduler,kube-controller-manager}.pid
stop_pidfiles 3 "$RUN_DIR"/{kube-apiserver,containerd}.pid
stop_pidfiles 10 "$RUN_DIR/etcd.pid"
kill_orphaned_tasks
kill_stray_shims
step_done "processes stopped"

unmount_all || die "mounts under $CLUSTER_DIR remain; not removing it: $(mounts_under_cluster_dir | tr '\n' ' ')"
delete_owned_links
remove_kubepods_cgroups
restore_host_state

# Nothing should still use the directory; say so if something does (it is not ours to kill).
# (The pattern comes from a file so that grep's own command line does not match.)
users=$(grep -lsF -f <(echo "$CLUSTER_DIR") /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | tr '\n' ' ' || true)
[ -z "$users" ] || log "warning: processes still mention $CLUSTER_DIR: $users"
rm -rf --one-file-system "$CLUSTER_DIR"
step_done "host cleaned, state removed"
print_timings "cluster down in $(fmt_ms $(( $(now_ms) - T0 )))"
