#!/usr/bin/env bash
# Paths and helpers shared by cluster/up.sh, cluster/down.sh and run/e2e.sh. Source it after hack/lib.sh.
#
# Conventions the e2e suite relies on:
# - Every process the cluster (or the e2e suite) starts writes its PID to $RUN_DIR/<name>.pid;
#   cluster-down stops exactly those PIDs and nothing else.
# - Host links the cluster owns: e2ebr0 (pod network bridge), e2esec0 (a test bridge), the veth pair
#   e2emv0/e2emv1 (macvlan master for tests) and every bridge whose name starts with "np" — tests
#   that need their own bridge must name it np*, so cluster-down can find and delete it.
# shellcheck disable=SC2034 # the settings below are used by the scripts that source this file

RUN_DIR=$CLUSTER_DIR/run
LOG_DIR=$CLUSTER_DIR/logs
PKI_DIR=$CLUSTER_DIR/pki
HOST_STATE_DIR=$CLUSTER_DIR/host-state
ENV_FILE=$CLUSTER_DIR/env
ADMIN_KUBECONFIG=$CLUSTER_DIR/kubeconfig
CRI_SOCKET=$CLUSTER_DIR/containerd/containerd.sock
MULTUS_SOCKET=$CLUSTER_DIR/multus/run/multus.sock
CRICTL_CONFIG=$CLUSTER_DIR/crictl.yaml
CNI_BIN_DIR=$CLUSTER_DIR/cni/bin
CNI_CONF_DIR=$CLUSTER_DIR/cni/net.d
CNI_IPAM_DIR=$CLUSTER_DIR/cni/ipam
NRI_SOCKET=$CLUSTER_DIR/containerd/nri/nri.sock
CDI_STATIC_DIR=$CLUSTER_DIR/cdi/static
CDI_DYNAMIC_DIR=$CLUSTER_DIR/cdi/dynamic
KUBELET_ROOT=$CLUSTER_DIR/kubelet/root
# The kubelet serves PodResources at <root-dir>/pod-resources/kubelet.sock; Multus (and a node agent
# written for a stock kubelet) looks in /var/lib/kubelet/pod-resources, which cluster-up links there.
POD_RESOURCES_SOCKET=$KUBELET_ROOT/pod-resources/kubelet.sock
POD_RESOURCES_LINK=/var/lib/kubelet/pod-resources
# Fixed in the kubelet (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1.DevicePluginPath), whatever its root dir.
DEVICE_PLUGIN_DIR=/var/lib/kubelet/device-plugins
MACVLAN_MASTER=e2emv0
APISERVER_URL=https://127.0.0.1:6443
# Not etcd's default ports: a distro etcd started by its package may already hold 2379/2380.
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
ETCD_METRICS_PORT=12381

# Host links cluster-down deletes (peers of veths go with them); bridges named np* are deleted too.
OWNED_LINKS=(e2ebr0 e2esec0 e2emv0)
OWNED_BRIDGE_PREFIX=np
# The local overlay's veth pool matches npdev*; the fixtures' peers are npdp*.
OWNED_VETH_PREFIX=npd

# Control-plane components, in start order; cluster-down stops them in reverse.
COMPONENTS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler multus-daemon kubelet)

# Kernel settings the kubelet (kernel tunables) and the bridge plugin (isGateway) change; cluster-up
# saves them and cluster-down puts them back.
TOUCHED_SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
                 kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Paths outside $CLUSTER_DIR that the components create whatever they are told (containerd 1.6's libcni
# cache, the kubelet's container-log symlinks and its fixed device-plugin socket directory, the
# pod-resources link cluster-up makes, util-linux's /run/mount/utab that the first mount or umount
# command on a fresh host creates); cluster-up notes which did not exist before, and cluster-down
# removes only those.
HOST_PATHS=(/var/lib/cni /var/log/containers "$POD_RESOURCES_LINK" /var/lib/kubelet /run/containerd /run/mount)

# Feature gates the cluster turns on where the Kubernetes version still gates them: DRA (GA in 1.34),
# ResourceClaim device status with networkData (GA in 1.37) and Pod allocatedResourcesStatus
# (ResourceHealthStatus, beta and on from 1.36).
FEATURE_GATES=(DynamicResourceAllocation DRAResourceClaimDeviceStatus ResourceHealthStatus)

# feature_gates BINARY GATE...: "G=true,..." for each GATE that BINARY lists in its --help, which
# names only alpha and beta gates ("G=true|false", from 1.37 "kube:G=true|false", and only the
# gates that component knows); a GA gate is on already, and may be locked or removed.
feature_gates() {
  local bin=$1 help g out=()
  shift
  help=$("$bin" --help 2>&1 || true)
  for g in "$@"; do
    if grep -qE "[[:space:]:]$g=true\|false" <<<"$help"; then out+=("$g=true"); fi
  done
  (IFS=,; echo "${out[*]}")
}

# kubectl would otherwise write its discovery cache to ~/.kube.
KUBECACHEDIR=$CLUSTER_DIR/kube-cache
export KUBECACHEDIR

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# fmt_ms MS: milliseconds as seconds with two decimals.
fmt_ms() { printf '%d.%02ds' $(( $1 / 1000 )) $(( ($1 % 1000) / 10 )); }

# step_done NAME: log and record how long the step since the previous step_done (or $STEP_START) took.
TIMINGS=()
step_done() {
  local t
  t=$(now_ms)
  TIMINGS+=("$(printf '%-34s %s' "$1" "$(fmt_ms $(( t - ${STEP_START:-t} )))")")
  log "$1: $(fmt_ms $(( t - ${STEP_START:-t} )))"
  STEP_START=$t
}
print_timings() { log "$1:"; printf '  %s\n' "${TIMINGS[@]}" >&2; }

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND...: poll COMMAND every 100 ms until it succeeds.
wait_for() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$(( $(now_ms) + timeout * 1000 ))
  until "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -lt "$deadline" ] || { log "timed out after ${timeout}s waiting for $what"; return 1; }
    sleep 0.1
  done
}

# spawn NAME COMMAND...: start a long-running component in its own session (so it outlives this
# script and a Ctrl-C of make), log to $LOG_DIR/NAME.log and record its PID.
spawn() {
  local name=$1 pid
  shift
  # setsid does not fork here (a background job is not a process-group leader), so $! is the component.
  setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  pid=$!
  printf '%s\n%s\n' "$pid" "$(start_ticks "$pid")" >"$RUN_DIR/$name.pid"
}

# start_ticks PID: when the process started, in clock ticks since boot (field 22 of /proc/PID/stat).
# Together with the PID it names one process for good: PIDs are reused, (PID, start) pairs are not.
start_ticks() {
  local stat fields
  stat=$(<"/proc/$1/stat") || return 1
  read -r -a fields <<<"${stat##*) }"   # fields after "pid (comm) ": state is [0], starttime is [19]
  [ "${fields[0]}" != Z ] || return 1    # a zombie has already exited
  echo "${fields[19]}"
}

# pid_of_ours PIDFILE: print the PID if the recorded process is still alive. A PID file is "PID" or
# "PID\nSTART_TICKS"; with the second line a reused PID is told apart from ours.
pid_of_ours() {
  local file=$1 pid want got
  [ -f "$file" ] || return 1
  { read -r pid || true; read -r want || true; } <"$file"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  got=$(start_ticks "$pid" 2>/dev/null) || return 1
  [ -z "$want" ] || [ "$want" = "$got" ] || return 1
  echo "$pid"
}

# stop_pidfiles GRACE_SECONDS PIDFILE...: SIGTERM every recorded process at once, SIGKILL those still
# alive after the grace period, then drop the files.
stop_pidfiles() {
  local grace=$1 f pid i alive
  shift
  for f in "$@"; do
    if pid=$(pid_of_ours "$f"); then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for (( i = 0; i <= grace * 10; i++ )); do
    alive=()
    for f in "$@"; do pid_of_ours "$f" >/dev/null && alive+=("$f"); done
    [ ${#alive[@]} -gt 0 ] || break
    sleep 0.1
  done
  for f in "$@"; do
    if pid=$(pid_of_ours "$f"); then
      log "$(basename "$f" .pid) (pid $pid) still running ${grace}s after SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

component_running() { pid_of_ours "$RUN_DIR/$1.pid" >/dev/null; }

apiserver_ready() {
  curl -sf --max-time 2 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "$APISERVER_URL/readyz" >/dev/null
}

multus_healthy() { curl -sf --max-time 2 --unix-socket "$MULTUS_SOCKET" http://multus/healthz >/dev/null; }

# node_schedulable: the node is Ready and carries no NoSchedule/NoExecute taint (the not-ready taint
# is lifted by the node-lifecycle controller a moment after Ready).
node_schedulable() {
  local out
  out=$(kubectl --kubeconfig "$ADMIN_KUBECONFIG" get node "$NODE_NAME" -o \
    'jsonpath={.status.conditions[?(@.type=="Ready")].status} {range .spec.taints[*]}{.effect},{end}') || return 1
  [[ "$out" == True* ]] && [[ "$out" != *NoSchedule* ]] && [[ "$out" != *NoExecute* ]]
}

# cluster_healthy: every component runs under its recorded PID and answers.
cluster_healthy() {
  local c
  [ -f "$ENV_FILE" ] || return 1
  for c in "${COMPONENTS[@]}"; do component_running "$c" || return 1; done
  apiserver_ready && multus_healthy && node_schedulable
}
