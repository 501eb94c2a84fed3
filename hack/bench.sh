#!/usr/bin/env bash
# What `make bench` runs: bring the local cluster up, build and deploy netplug into it, run
# TestBench (e2e/bench_test.go: hot-plug latency, burst throughput and footprint of netplug
# against raw Multus /delegate calls), and tear the cluster down (KEEP_CLUSTER=1 keeps it).
# The figures are printed as Markdown and written as JSON to $BENCH_OUT.
#
# env: BENCH_PODS=50 BENCH_IFACES=2   the burst: pods × interfaces each
#      BENCH_SCALE_PODS=5000          pods of a fake second node during the scale part (0 skips it)
#      BENCH_LOCAL_PODS=110           running local pods of the scale part (capped by the node)
#      BENCH_OUT=_out/bench.json      where the JSON goes
#      KEEP_CLUSTER=1                 leave the cluster running afterwards
#      ARTIFACTS=DIR                  where logs of a failed run go (default: _out/bench-artifacts)
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HACK")
# shellcheck source=hack/lib.sh
source "$HACK/lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"

T0=$(now_ms)
ARTIFACTS=${ARTIFACTS:-$ROOT/_out/bench-artifacts}
export BENCH_SCALE_PODS=${BENCH_SCALE_PODS:-5000}
export BENCH_OUT=${BENCH_OUT:-$ROOT/_out/bench.json}

# dump_diagnostics: the controller's and the Multus daemon's logs, while the cluster still exists.
dump_diagnostics() {
  local pod
  if [ -f "$ADMIN_KUBECONFIG" ]; then
    for pod in $(kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n netplug-system get pods -o name 2>/dev/null); do
      log "----- $pod logs (tail)"
      kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n netplug-system logs "$pod" --all-containers --tail=200 2>&1 || true
    done
  fi
  log "----- multus-daemon log (tail)"
  tail -n 100 "$LOG_DIR/multus-daemon.log" 2>/dev/null || true
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
  log "bench $([ "$rc" = 0 ] && echo "done, results in $BENCH_OUT" || echo "FAILED (exit $rc)") in $(fmt_ms $(( $(now_ms) - T0 )))"
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

NETPLUG_BENCH=1 go test -tags e2e -run '^TestBench$' -count=1 -timeout 60m -v ./e2e/
