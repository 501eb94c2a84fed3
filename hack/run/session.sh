#!/usr/bin/env bash
# Sourced by hack/run/e2e.sh and hack/run/bench.sh (after lib.sh and cluster/common.sh, with HACK and ROOT
# set): one run against the local cluster with netplug deployed as its DaemonSet.
#
# env: KEEP_CLUSTER=1   leave the cluster running afterwards
#      ARTIFACTS=DIR    where logs of a failed run go (default: _out/<name>-artifacts in the repo)

# dump_diagnostics: what a failed run needs to be understood, printed while the cluster still exists.
dump_diagnostics() {
  local pod
  log "----- netplug controller logs (namespace netplug-system)"
  if [ -f "$ADMIN_KUBECONFIG" ]; then
    kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n netplug-system get pods -o wide 2>&1 || true
    for pod in $(kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n netplug-system get pods -o name 2>/dev/null); do
      log "--- $pod"
      kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n netplug-system logs "$pod" --all-containers --tail=300 2>&1 || true
    done
    kubectl --kubeconfig "$ADMIN_KUBECONFIG" get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 50 || true
  fi
  log "----- multus-daemon log (tail)"
  tail -n 150 "$LOG_DIR/multus-daemon.log" 2>/dev/null || true
  log "----- kubelet log (tail)"
  tail -n 100 "$LOG_DIR/kubelet.log" 2>/dev/null || true
  if [ -d "$LOG_DIR" ]; then
    mkdir -p "$ARTIFACTS"
    cp -r "$LOG_DIR"/. "$ARTIFACTS/"
    log "all cluster logs copied to $ARTIFACTS"
  fi
}

session_exit() {
  local rc=$?
  set +e
  [ "$rc" = 0 ] || dump_diagnostics
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    log "KEEP_CLUSTER=1: cluster left running; stop it with: make cluster-down"
  else
    "$HACK/cluster/down.sh"
  fi
  log "$SESSION_NAME $([ "$rc" = 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(fmt_ms $(( $(now_ms) - SESSION_T0 )))"
  exit "$rc"
}

# cluster_session NAME: bring the cluster up, build and deploy netplug, load the cluster's env
# file, and arrange diagnostics and teardown for when the script exits.
cluster_session() {
  SESSION_NAME=$1
  SESSION_T0=$(now_ms)
  ARTIFACTS=${ARTIFACTS:-$ROOT/_out/$1-artifacts}
  trap session_exit EXIT
  "$HACK/cluster/up.sh"
  set -a
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  set +a
  cd "$ROOT" || return
  make image
  make deploy OVERLAY=local
}
