#!/usr/bin/env bash
# What `make e2e` runs: bring the local cluster up, build and deploy netplug into it, run the e2e
# suite, and always tear the cluster down (KEEP_CLUSTER=1 keeps it for debugging). On failure the
# controller, Multus and kubelet logs are printed and all cluster logs copied to $ARTIFACTS.
#
# env: KEEP_CLUSTER=1   leave the cluster running afterwards
#      ARTIFACTS=DIR    where logs of a failed run go (default: _out/e2e-artifacts in the repo)
#      E2E_ARGS="..."   extra `go test` arguments, e.g. E2E_ARGS='-run TestHotplug'
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HACK")
# shellcheck source=hack/lib.sh
source "$HACK/lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"

T0=$(now_ms)
ARTIFACTS=${ARTIFACTS:-$ROOT/_out/e2e-artifacts}

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

on_exit() {
  local rc=$?
  set +e
  [ "$rc" = 0 ] || dump_diagnostics
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    log "KEEP_CLUSTER=1: cluster left running; stop it with: make cluster-down"
  else
    "$HACK/cluster-down.sh"
  fi
  log "e2e $([ "$rc" = 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(fmt_ms $(( $(now_ms) - T0 )))"
  exit "$rc"
}
trap on_exit EXIT

"$HACK/cluster-up.sh"
set -a
# shellcheck source=/dev/null
source "$ENV_FILE"
set +a

cd "$ROOT"
make image
make deploy OVERLAY=local

# shellcheck disable=SC2086 # E2E_ARGS is a list of go test arguments
go test -tags e2e -count=1 -timeout 40m -v ./e2e/... ${E2E_ARGS:-}

# A tiny run of the benchmark (2 pods, 1 interface each) so `make bench` keeps working; its
# figures are not a test. The real run is `make bench`.
NETPLUG_BENCH=1 BENCH_PODS=2 BENCH_IFACES=1 BENCH_SCALE_PODS=0 BENCH_OUT="$ROOT/_out/bench-smoke.json" \
  go test -tags e2e -count=1 -timeout 10m -run '^TestBench$' -v ./e2e/
