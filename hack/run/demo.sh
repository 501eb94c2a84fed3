#!/usr/bin/env bash
# `make demo`: from a fresh machine to a network interface hot-plugged into a running pod, and
# unplugged again. Brings up the local cluster (or reuses a running one), builds and deploys
# netplug, then annotates a busybox pod and shows its interfaces before, during and after.
# The cluster is left running; `make cluster-down` removes it.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NS=netplug-demo
POD=demo
NAD=demo-bridge
BRIDGE=np-demo0 # host bridge; cluster-down deletes bridges named np*
SUBNET=10.250.0.0/24
NETWORKS=k8s.v1.cni.cncf.io/networks
NETWORK_STATUS=k8s.v1.cni.cncf.io/network-status
TIMEOUT=60 # seconds for each wait below

started=$(date +%s)
section() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }

# On any failure, show what the controller and the pod have to say about it.
diagnose() {
  local status=$?
  [ "$status" -ne 0 ] || return 0
  set +e
  section "FAILED (exit $status): diagnostics"
  if ! kubectl get --raw /readyz >/dev/null 2>&1; then
    log "the API server does not answer: is the cluster up? (logs in $CLUSTER_DIR/logs)"
    return 0
  fi
  kubectl -n netplug-system get pods -o wide
  kubectl -n netplug-system logs ds/netplug --tail=40
  kubectl -n "$NS" describe pod "$POD" | tail -25
  log "the cluster is left running for a look; make cluster-down removes it"
}
trap diagnose EXIT

# wait_until DESCRIPTION COMMAND...: poll COMMAND until it succeeds, for at most $TIMEOUT seconds.
wait_until() {
  local what=$1 deadline=$(($(date +%s) + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting until $what"
    sleep 0.5
  done
}

pod_ip_addr() { kubectl -n "$NS" exec "$POD" -- ip addr; }
network_status() { kubectl -n "$NS" get pod "$POD" -o json | jq --arg k "$NETWORK_STATUS" '.metadata.annotations[$k] // "[]" | fromjson'; }
status_lists() { network_status | jq -e --arg i "$1" 'any(.[]; .interface == $i)'; }
pod_has_link() { kubectl -n "$NS" exec "$POD" -- ip link show "$1"; }
plugged() { status_lists net1 && pod_has_link net1; }
unplugged() { ! status_lists net1 && ! pod_has_link net1; }

section "1/6 Local cluster"
"$HACK/cluster/up.sh" # leaves a healthy cluster as it is
set -a
# shellcheck disable=SC1091
source "$CLUSTER_DIR/env"
set +a
kubectl get nodes -o wide

section "2/6 Build the netplug image and import it into the cluster's containerd"
make -C "$ROOT" --no-print-directory image

section "3/6 Deploy netplug (overlay local)"
redeploy=false
kubectl -n netplug-system get ds netplug >/dev/null 2>&1 && redeploy=true
make -C "$ROOT" --no-print-directory deploy OVERLAY=local
if $redeploy; then
  # The tag did not change, so the DaemonSet did not either: restart it onto the new image.
  kubectl -n netplug-system rollout restart ds/netplug
  kubectl -n netplug-system rollout status ds/netplug --timeout=120s
fi
kubectl -n netplug-system get pods -o wide

section "Device pools and DRA (the local overlay's pools: netplug.io/veth by prefix npdev, netplug.io/tun)"
# A veth pair for the veth pool: npdev0 is the pool's device, npdp0 its peer on the host.
ip link show npdev0 >/dev/null 2>&1 || { ip link add npdev0 type veth peer name npdp0 && ip link set npdev0 up && ip link set npdp0 up; }
pool_allocatable() { kubectl get node "$NODE_NAME" -o json | jq -e '.status.allocatable["netplug.io/veth"] | tonumber >= 1'; }
wait_until "the node's allocatable shows netplug.io/veth" pool_allocatable
echo "\$ kubectl get node $NODE_NAME -o jsonpath='{.status.allocatable}'"
kubectl get node "$NODE_NAME" -o jsonpath='{.status.allocatable}' | jq -c 'with_entries(select(.key | startswith("netplug.io")))'
echo "\$ kubectl get resourceslices,deviceclasses (DRA driver netplug.io)"
kubectl get resourceslices -o custom-columns=NAME:.metadata.name,DRIVER:.spec.driver,DEVICES:.spec.devices[*].name --no-headers | grep netplug.io | cut -c1-160 || true
kubectl get deviceclasses

section "4/6 A running pod with only its cluster network (eth0)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
# Pods need the namespace's "default" ServiceAccount, which the controller-manager creates.
wait_until "ServiceAccount $NS/default exists" kubectl -n "$NS" get serviceaccount default
kubectl -n "$NS" delete pod "$POD" --ignore-not-found --wait=true
kubectl apply -f - <<EOF
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: $NAD
  namespace: $NS
spec:
  config: '{"cniVersion":"0.4.0","name":"$NAD","type":"bridge","bridge":"$BRIDGE","ipam":{"type":"host-local","dataDir":"$CLUSTER_DIR/demo/ipam","ranges":[[{"subnet":"$SUBNET"}]]}}'
---
apiVersion: v1
kind: Pod
metadata:
  name: $POD
  namespace: $NS
spec:
  nodeName: $NODE_NAME
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 2
  containers:
  - name: busybox
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
EOF
kubectl -n "$NS" wait --for=condition=Ready "pod/$POD" --timeout="${TIMEOUT}s"
echo "\$ kubectl -n $NS exec $POD -- ip addr"
pod_ip_addr

section "5/6 Hot-plug: annotate the running pod with $NETWORKS=$NAD"
kubectl -n "$NS" annotate pod "$POD" "$NETWORKS=$NAD"
wait_until "net1 is plugged into $NS/$POD and listed in its network-status" plugged
echo "\$ kubectl -n $NS exec $POD -- ip addr"
pod_ip_addr
echo
echo "network-status annotation (written by netplug):"
network_status
echo
echo "events on the pod:"
kubectl -n "$NS" get events --field-selector "involvedObject.uid=$(kubectl -n "$NS" get pod "$POD" -o jsonpath='{.metadata.uid}')"

section "6/6 Unplug: remove the annotation"
kubectl -n "$NS" annotate pod "$POD" "$NETWORKS-"
wait_until "net1 is gone from $NS/$POD and from its network-status" unplugged
echo "\$ kubectl -n $NS exec $POD -- ip addr"
pod_ip_addr

section "Done in $(($(date +%s) - started))s"
cat <<EOF
The cluster is still running. Try it yourself:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $NS annotate pod $POD $NETWORKS=$NAD --overwrite
  kubectl -n $NS exec $POD -- ip addr
  kubectl -n netplug-system logs ds/netplug
Tear it all down with:
  make cluster-down
EOF
