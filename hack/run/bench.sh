#!/usr/bin/env bash
# What `make bench` runs: bring the local cluster up, build and deploy netplug into it, run
# TestBench (e2e/bench: hot-plug latency, burst throughput and footprint of netplug against raw
# Multus /delegate calls, then a full node: its burst, idle footprint, one NAD update and a
# restart), and tear the cluster down (KEEP_CLUSTER=1 keeps it). Every figure of issue 17's
# targets is printed as Markdown, netplug and raw side by side, and written as JSON to $BENCH_OUT.
# Budget: well under 30 minutes on a 2-core machine (an estimate), most of it creating and deleting pods.
#
# env: BENCH_PODS=50 BENCH_IFACES=2   the burst and single-plug parts: pods × interfaces each
#      BENCH_NODE_PODS=110            pods of the full node (capped by its free pod capacity; 0: none)
#      BENCH_NODE_IFACES=4            interfaces of each of them
#      BENCH_NADS=500                 NADs in the cluster during the node part (0 skips the NAD update)
#      BENCH_NAD_REFS                 pods that reference the updated NAD (default: a tenth of them)
#      BENCH_RESTART=1                0 skips the restart of netplug on the full node
#      BENCH_SCALE_PODS=5000          pods of a fake second node in the cluster meanwhile (0: none)
#      BENCH_IDLE_S=30                seconds of idle measured with all of them there
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
# BENCH_LOCAL_PODS is the former name of BENCH_NODE_PODS.
export BENCH_NODE_PODS=${BENCH_NODE_PODS:-${BENCH_LOCAL_PODS:-110}}
export BENCH_NODE_IFACES=${BENCH_NODE_IFACES:-4}
export BENCH_NADS=${BENCH_NADS:-500}
export BENCH_OUT=${BENCH_OUT:-$ROOT/_out/bench.json}

cluster_session bench

NETPLUG_BENCH=1 go test -tags e2e -run '^TestBench$' -count=1 -timeout 60m -v ./e2e/bench/
log "results in $BENCH_OUT"
