#!/usr/bin/env bash
# What `make e2e` runs: bring the local cluster up, build and deploy netplug into it, run the e2e
# suite, a short soak (6 pods, 120 edits, every fault) and a tiny benchmark, and always tear the
# cluster down (KEEP_CLUSTER=1 keeps it for debugging). On failure the
# controller, Multus and kubelet logs are printed and all cluster logs copied to $ARTIFACTS.
#
# env: KEEP_CLUSTER=1   leave the cluster running afterwards
#      ARTIFACTS=DIR    where logs of a failed run go (default: _out/e2e-artifacts in the repo)
#      E2E_ARGS="..."   extra `go test` arguments, e.g. E2E_ARGS='-run TestNetplug/01'
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"
# shellcheck source=hack/run/session.sh
source "$HACK/run/session.sh"

cluster_session e2e

# The e2e packages (suite, soak, bench) share the cluster: -p 1 runs them one after the other.
# shellcheck disable=SC2086 # E2E_ARGS is a list of go test arguments
go test -tags e2e -count=1 -p 1 -timeout 40m -v ./e2e/... ${E2E_ARGS:-}

# The short soak: the same churn, faults and leak counts as `make soak`, on fewer pods and edits
# (about 2 minutes). Its figures land in _out/soak-short.json.
NETPLUG_SOAK=1 SOAK_PODS=${SOAK_PODS:-6} SOAK_CYCLES=${SOAK_CYCLES:-120} SOAK_OUT="$ROOT/_out/soak-short.json" \
  go test -tags e2e -count=1 -timeout 20m -run '^TestSoak$' -v ./e2e/soak/

# A tiny run of the benchmark (2 pods, 1 interface each) so `make bench` keeps working; its
# figures are not a test. The real run is `make bench`.
NETPLUG_BENCH=1 BENCH_PODS=2 BENCH_IFACES=1 BENCH_SCALE_PODS=0 BENCH_OUT="$ROOT/_out/bench-smoke.json" \
  go test -tags e2e -count=1 -timeout 10m -run '^TestBench$' -v ./e2e/bench/

# Last, because it removes netplug: `make undeploy` leaves no pod on netplug's finalizer.
NETPLUG_E2E_UNINSTALL=1 go test -tags e2e -count=1 -timeout 10m -run '^TestUninstall$' -v ./e2e/suite/
