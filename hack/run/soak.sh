#!/usr/bin/env bash
# What `make soak` runs: bring the local cluster up, build and deploy netplug into it, run
# TestSoak (e2e/soak/soak_test.go: random plug/unplug/replug edits on SOAK_PODS pods while faults hit
# the node, then leak and drift counts), and tear the cluster down (KEEP_CLUSTER=1 keeps it).
# The figures are printed as Markdown and written as JSON to $SOAK_OUT.
#
# env: SOAK_PODS=10 SOAK_CYCLES=500   pods, and edits
#      SOAK_FAULTS=all                "none", or a comma list: controller-kill, controller-down,
#                                     multus-restart, nad-deleted, containerd-restart, apiserver-restart
#      SOAK_SEED=N                    replay the random edits of an earlier run
#      SOAK_OUT=_out/soak.json        where the JSON goes
#      KEEP_CLUSTER=1                 leave the cluster running afterwards
#      ARTIFACTS=DIR                  where logs of a failed run go (default: _out/soak-artifacts)
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"
# shellcheck source=hack/run/session.sh
source "$HACK/run/session.sh"

export SOAK_OUT=${SOAK_OUT:-$ROOT/_out/soak.json}

cluster_session soak

NETPLUG_SOAK=1 go test -tags e2e -run '^TestSoak$' -count=1 -timeout 60m -v ./e2e/soak/
log "results in $SOAK_OUT"
