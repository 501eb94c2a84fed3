#!/usr/bin/env bash
# Uninstall netplug without leaving a pod stuck Terminating on its finalizer.
#   1. wait (UNDEPLOY_WAIT, default 120 s) for netplug to release the pods already being deleted
#      that still carry netplug.io/release-interfaces: while it runs, it DELs their interfaces
#      (their IPs go back to IPAM) and then removes the finalizer itself;
#   2. delete the DaemonSet and wait for its pods to go, so that no instance adds the finalizer again;
#   3. strip every netplug.io/release-interfaces finalizer left on any pod of the cluster (a JSON
#      patch per pod that removes exactly that entry by index, guarded by a "test" op of the same
#      index, so a concurrent change of the list fails the patch instead of removing another
#      finalizer; a failed patch is retried on a fresh read);
#   4. delete everything else of the rendered manifests (FILE, default _out/netplug.yaml).
# Idempotent: every step is a no-op on what is already gone, so a second run finishes the job.
# Interfaces of pods stripped in step 3 are not released: their IPs stay allocated in IPAM.
# Env: FILE (rendered manifests), UNDEPLOY_WAIT (seconds for step 1), KUBECONFIG.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

FILE=${FILE:-$ROOT/_out/netplug.yaml}
UNDEPLOY_WAIT=${UNDEPLOY_WAIT:-120}
NAMESPACE=netplug-system
FINALIZER=netplug.io/release-interfaces

command -v kubectl >/dev/null || die "kubectl not found"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
[ -f "$FILE" ] || die "$FILE not found (make manifests renders it)"

# with_finalizer [terminating]: "namespace name index" of every pod carrying the finalizer (only
# those being deleted with "terminating"), index = position of the finalizer in its list.
with_finalizer() {
  kubectl get pods --all-namespaces -o json |
    jq -r --arg f "$FINALIZER" --arg only "${1:-}" '
      .items[]
      | select($only == "" or .metadata.deletionTimestamp != null)
      | (.metadata.finalizers // []) as $fs
      | ($fs | index($f)) as $i
      | select($i != null)
      | "\(.metadata.namespace) \(.metadata.name) \($i)"'
}

# 1. Let netplug release what it can.
if kubectl -n "$NAMESPACE" get daemonset netplug >/dev/null 2>&1; then
  deadline=$((SECONDS + UNDEPLOY_WAIT))
  while :; do
    pending=$(with_finalizer terminating)
    [ -n "$pending" ] || break
    if ((SECONDS >= deadline)); then
      log "after ${UNDEPLOY_WAIT}s netplug has not released $(wc -l <<<"$pending") terminating pod(s); their finalizers are removed below:"
      log "$pending"
      break
    fi
    log "waiting for netplug to release $(wc -l <<<"$pending") terminating pod(s) (up to ${UNDEPLOY_WAIT}s)"
    sleep 5
  done
fi

# 2. No netplug instance left to add the finalizer again.
kubectl -n "$NAMESPACE" delete daemonset netplug --ignore-not-found --wait=true --timeout=120s
kubectl -n "$NAMESPACE" wait --for=delete pod -l app.kubernetes.io/name=netplug --timeout=120s 2>/dev/null || true
if [ -n "$(kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/name=netplug -o name 2>/dev/null)" ]; then
  die "netplug pods are still there after 120s (kubectl -n $NAMESPACE get pods); run this again once they are gone"
fi

# 3. Strip what is left, exactly netplug's finalizer, with a test-guarded JSON patch.
for round in 1 2 3 4 5; do
  left=$(with_finalizer)
  [ -z "$left" ] && break
  while read -r ns name i; do
    patch="[{\"op\":\"test\",\"path\":\"/metadata/finalizers/$i\",\"value\":\"$FINALIZER\"},{\"op\":\"remove\",\"path\":\"/metadata/finalizers/$i\"}]"
    if kubectl -n "$ns" patch pod "$name" --type=json -p "$patch" >/dev/null 2>&1; then
      log "removed $FINALIZER from pod $ns/$name"
    else
      log "pod $ns/$name changed meanwhile (or is gone); retrying on a fresh read (round $round)"
    fi
  done <<<"$left"
done
left=$(with_finalizer)
[ -z "$left" ] || die "pods still carrying $FINALIZER after 5 rounds: $left"

# 4. The rest: RBAC, admission policy, ConfigMap, namespace.
kubectl delete --ignore-not-found --wait=true -f "$FILE"
log "netplug uninstalled; no pod carries $FINALIZER"
