#!/usr/bin/env bash
# What `make bench` runs: bring the local cluster up, build and deploy netplug into it, run
# TestBench (e2e/bench/bench_test.go: hot-plug latency, burst throughput and footprint of netplug
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
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"
# shellcheck source=hack/run/session.sh
source "$HACK/run/session.sh"

export BENCH_SCALE_PODS=${BENCH_SCALE_PODS:-5000}
export BENCH_OUT=${BENCH_OUT:-$ROOT/_out/bench.json}

cluster_session bench

NETPLUG_BENCH=1 go test -tags e2e -run '^TestBench$' -count=1 -timeout 60m -v ./e2e/bench/
log "results in $BENCH_OUT"
