#!/usr/bin/env bash
# Brings up a single-node Kubernetes from real binaries on loopback: etcd, kube-apiserver,
# containerd (with images imported from files), kube-controller-manager, kube-scheduler, the Multus
# thick daemon (primary network: a single-plugin bridge .conf) and the kubelet. All state lives in
# $CLUSTER_DIR; hack/cluster/down.sh removes it and everything the cluster left on the host.
#
# Writes $CLUSTER_DIR/env (KEY=value lines; `set -a; . $CLUSTER_DIR/env; set +a` exports them) for the
# e2e suite and the manifests' local overlay. Idempotent: a healthy cluster is left as it is.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hack/cluster/common.sh
source "$HACK/cluster/common.sh"

T0=$(now_ms)
STEP_START=$T0
# The path ends up unquoted in KEY=value lines, sed replacements and unix socket addresses.
[[ "$CLUSTER_DIR" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "CLUSTER_DIR must be an absolute path of [A-Za-z0-9._/-]: $CLUSTER_DIR"

print_usage_hint() {
  echo "export KUBECONFIG=$ADMIN_KUBECONFIG"
  log "all settings: set -a; . $ENV_FILE; set +a"
}

# On failure, say where to look; a half-started cluster is for hack/cluster/down.sh to remove.
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] || log "cluster-up failed (exit $rc); logs in $LOG_DIR; clean up with: make cluster-down"
}
trap on_exit EXIT

render() { # render TEMPLATE OUT: fill in the @VAR@ placeholders of a hack/cluster template
  sed -e "s|@CLUSTER_DIR@|$CLUSTER_DIR|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
      -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" -e "s|@RUNC@|$(command -v runc)|g" \
      -e "s|@KUBELET_FEATURE_GATES@|$(sed -e 's/=/: /g' -e 's/,/, /g' <<<"$GATES")|g" "$HACK/cluster/$1" >"$2"
}

check_ports_free() {
  local port busy=()
  for port in "$@"; do
    if ss -Hltn "sport = :$port" | grep -q .; then busy+=("$port"); fi
  done
  [ ${#busy[@]} = 0 ] || die "TCP ports in use: ${busy[*]} (another cluster running? try: make cluster-down)"
}

# save_host_state: what teardown must restore, recorded before anything changes it.
save_host_state() {
  local s p
  mkdir -p "$HOST_STATE_DIR"
  for s in "${TOUCHED_SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(sysctl -n "$s")"
  done >"$HOST_STATE_DIR/sysctl"
  for p in "${HOST_PATHS[@]}"; do
    [ -e "$p" ] || echo "$p"
  done >"$HOST_STATE_DIR/created-paths"
  for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$p" ] && echo "$p"
  done >"$HOST_STATE_DIR/preexisting-cgroups" || true
}

# dra_runtime_config: the apiserver's --runtime-config for DRA: resource.k8s.io/v1 from 1.34 (on by
# default there; said anyway), the beta versions before.
dra_runtime_config() {
  if version_ge "$K8S_VERSION" v1.34.0; then echo resource.k8s.io/v1=true
  else echo resource.k8s.io/v1beta1=true,resource.k8s.io/v1beta2=true; fi
}

# kcm_controllers: all default controllers but the node-IPAM and cloud ones; only those this
# kube-controller-manager still has are named (1.37 dropped route, service-lb, cloud-node-lifecycle).
kcm_controllers() {
  local all c list='*'
  all=$("$BIN_DIR/kube-controller-manager" --help 2>&1 | grep -m1 'All controllers:' | tr -d ' ') || true
  for c in node-ipam-controller node-route-controller service-lb-controller cloud-node-lifecycle-controller; do
    if [[ ",${all#*:}," == *",$c,"* ]]; then list+=",-$c"; fi
  done
  echo "$list"
}

link_pod_resources() {
  mkdir -p "$KUBELET_ROOT/pod-resources" "$(dirname "$POD_RESOURCES_LINK")"
  if [ -L "$POD_RESOURCES_LINK" ] || [ ! -e "$POD_RESOURCES_LINK" ]; then
    ln -sfn "$KUBELET_ROOT/pod-resources" "$POD_RESOURCES_LINK"
  else
    log "warning: $POD_RESOURCES_LINK exists (another kubelet?); Multus will not see this kubelet's pod resources"
  fi
}

write_env_file() {
  cat >"$ENV_FILE.tmp" <<EOF
CLUSTER_DIR=$CLUSTER_DIR
BIN_DIR=$BIN_DIR
NODE_NAME=$NODE_NAME
KUBECONFIG=$ADMIN_KUBECONFIG
CRI_SOCKET=$CRI_SOCKET
MULTUS_SOCKET=$MULTUS_SOCKET
CRI_CONFIG_FILE=$CRICTL_CONFIG
CONTAINERD_ADDRESS=$CRI_SOCKET
CONTAINERD_NAMESPACE=k8s.io
CNI_BIN_DIR=$CNI_BIN_DIR
CNI_CONF_DIR=$CNI_CONF_DIR
CNI_IPAM_DIR=$CNI_IPAM_DIR
MACVLAN_MASTER=$MACVLAN_MASTER
PAUSE_IMAGE=$PAUSE_IMAGE
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
APISERVER_URL=$APISERVER_URL
RUN_DIR=$RUN_DIR
LOG_DIR=$LOG_DIR
KUBECACHEDIR=$KUBECACHEDIR
K8S_VERSION=$K8S_VERSION
CONTAINERD_VERSION=$(containerd --version | awk '{print $3}')
NRI_SOCKET=$NRI_SOCKET
CDI_SPEC_DIRS=$CDI_STATIC_DIR:$CDI_DYNAMIC_DIR
POD_RESOURCES_SOCKET=$POD_RESOURCES_SOCKET
DEVICE_PLUGIN_DIR=$DEVICE_PLUGIN_DIR
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------------------------------------------
if cluster_healthy; then
  log "cluster already up and healthy in $CLUSTER_DIR"
  print_usage_hint
  exit 0
fi
if [ -d "$CLUSTER_DIR" ]; then
  log "found state of a cluster that is not healthy in $CLUSTER_DIR; tearing it down first"
  "$HACK/cluster/down.sh"
fi
T0=$(now_ms)
STEP_START=$T0

"$HACK/cluster/install-deps.sh"
step_done "dependencies"

[ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] || log "note: cgroup v2 host (tested on cgroup v1 hybrid)"
check_ports_free 6443 10248 10250 10257 10259 "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$ETCD_METRICS_PORT"
[ ! -e "$CRI_SOCKET" ] || die "$CRI_SOCKET exists without a cluster; run make cluster-down"

mkdir -p "$RUN_DIR" "$LOG_DIR" "$CLUSTER_DIR"/{etcd,apiserver,kcm,scheduler} \
  "$CLUSTER_DIR"/containerd/{tmp,nri/plugins,nri/conf.d} "$CDI_STATIC_DIR" "$CDI_DYNAMIC_DIR" \
  "$CNI_BIN_DIR" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" \
  "$CLUSTER_DIR"/multus/{certs,run,cache} "$CLUSTER_DIR"/kubelet/{root,pki,pod-logs}
save_host_state

# Images (cached after the first build) and PKI are independent; build them side by side.
"$HACK/build/images/build-local-images.sh" >"$RUN_DIR/images-dir" 2>"$LOG_DIR/images.log" &
images_job=$!
"$HACK/cluster/pki.sh" "$PKI_DIR" "$NODE_NAME" "$CLUSTER_DIR/multus/certs"
cp "$PKI_DIR/admin.kubeconfig" "$ADMIN_KUBECONFIG"
wait "$images_job" || { cat "$LOG_DIR/images.log" >&2; die "building the local images failed"; }
IMAGES_DIR=$(<"$RUN_DIR/images-dir")
rm -f "$RUN_DIR/images-dir"
step_done "pki + images"

# Feature gates this Kubernetes still has for what the cluster offers (GA ones are on and may be
# locked or removed, so they are left out); each component gets those it knows.
APISERVER_GATES=$(feature_gates "$BIN_DIR/kube-apiserver" "${FEATURE_GATES[@]}")
KCM_GATES=$(feature_gates "$BIN_DIR/kube-controller-manager" "${FEATURE_GATES[@]}")
SCHEDULER_GATES=$(feature_gates "$BIN_DIR/kube-scheduler" "${FEATURE_GATES[@]}")
GATES=$(feature_gates "$BIN_DIR/kubelet" "${FEATURE_GATES[@]}") # the kubelet's, for its config template
log "feature gates: apiserver ${APISERVER_GATES:-none}; controller-manager ${KCM_GATES:-none};" \
  "scheduler ${SCHEDULER_GATES:-none}; kubelet ${GATES:-none}"
# containerd 2 reads config version 3; the distribution's 1.x (compatibility run) version 2.
containerd_major=$(containerd --version | awk '{print $3}' | sed 's/^v//' | cut -d. -f1)
if [ "$containerd_major" -ge 2 ]; then
  render containerd.toml.in "$CLUSTER_DIR/containerd/config.toml"
else
  render containerd-1.x.toml.in "$CLUSTER_DIR/containerd/config.toml"
fi
render kubelet-config.yaml.in "$CLUSTER_DIR/kubelet/config.yaml"
render multus-daemon-config.json.in "$CLUSTER_DIR/multus/daemon-config.json"
render podnet.conf.in "$CNI_CONF_DIR/10-netplug-podnet.conf"
# CNI binaries: Debian's plugins plus the Multus shim that forwards to the daemon's socket.
for plugin in /usr/lib/cni/*; do ln -sf "$plugin" "$CNI_BIN_DIR/"; done
ln -sf "$BIN_DIR/multus-shim" "$CNI_BIN_DIR/multus-shim"
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$CRI_SOCKET" "$CRI_SOCKET" >"$CRICTL_CONFIG"
# The macvlan test network needs a master that is not eth0; a veth pair is one.
if ! ip link show "$MACVLAN_MASTER" >/dev/null 2>&1; then
  ip link add "$MACVLAN_MASTER" type veth peer name e2emv1
fi
ip link set "$MACVLAN_MASTER" up
ip link set e2emv1 up
step_done "configs"

# etcd and containerd do not depend on anything; start both, then the apiserver as soon as etcd answers.
spawn etcd etcd --name netplug-e2e --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "netplug-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS_PORT" \
  --unsafe-no-fsync
spawn containerd "$(command -v containerd)" --config "$CLUSTER_DIR/containerd/config.toml"
wait_for 30 "etcd" curl -sf --max-time 1 "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
step_done "etcd ready"

spawn kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
  --cert-dir="$CLUSTER_DIR/apiserver" \
  --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
  --client-ca-file="$PKI_DIR/ca.crt" \
  --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=Hostname,InternalIP \
  --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/12 \
  --endpoint-reconciler-type=none \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  ${APISERVER_GATES:+--feature-gates=$APISERVER_GATES} \
  --runtime-config="$(dra_runtime_config)" \
  --profiling=false --v=1

# While the apiserver starts: containerd is up within a second; import the images into the CRI namespace.
wait_for 30 "containerd" ctr --address "$CRI_SOCKET" version
ctr --address "$CRI_SOCKET" -n k8s.io images import "$IMAGES_DIR/pause.tar" >/dev/null
ctr --address "$CRI_SOCKET" -n k8s.io images import "$IMAGES_DIR/busybox.tar" >/dev/null
step_done "containerd ready + images"

wait_for 120 "kube-apiserver /readyz" apiserver_ready
step_done "kube-apiserver ready"

export KUBECONFIG=$ADMIN_KUBECONFIG
kubectl apply -f "$HACK/cluster/nad-crd.yaml" -f "$HACK/cluster/multus-rbac.yaml" >/dev/null
spawn kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$PKI_DIR/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$PKI_DIR/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$PKI_DIR/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 --cert-dir="$CLUSTER_DIR/kcm" \
  --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
  --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
  --service-cluster-ip-range=10.96.0.0/12 \
  --controllers="$(kcm_controllers)" \
  --node-monitor-period=1s \
  --kube-api-qps=100 --kube-api-burst=200 \
  ${KCM_GATES:+--feature-gates=$KCM_GATES} --v=1
spawn kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$PKI_DIR/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$PKI_DIR/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$PKI_DIR/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --cert-dir="$CLUSTER_DIR/scheduler" \
  --leader-elect=false ${SCHEDULER_GATES:+--feature-gates=$SCHEDULER_GATES} --v=1
spawn multus-daemon env MULTUS_NODE_NAME="$NODE_NAME" "$BIN_DIR/multus-daemon" \
  -config "$CLUSTER_DIR/multus/daemon-config.json"
# Multus's kubelet client looks for the PodResources socket at /var/lib/kubelet/pod-resources (fixed);
# point that at this kubelet's <root>/pod-resources. Another kubelet's directory is left alone.
link_pod_resources
# The kubelet need not wait for the others: its node is Ready once containerd sees a CNI config (the
# bridge .conf is already there), and no pod is created before everything below has answered.
spawn kubelet "$BIN_DIR/kubelet" \
  --config="$CLUSTER_DIR/kubelet/config.yaml" \
  --kubeconfig="$PKI_DIR/kubelet.kubeconfig" \
  --root-dir="$CLUSTER_DIR/kubelet/root" \
  --cert-dir="$CLUSTER_DIR/kubelet/pki" \
  --hostname-override="$NODE_NAME" \
  --v=2
wait_for 60 "kube-controller-manager /healthz" curl -skf --max-time 1 https://127.0.0.1:10257/healthz
wait_for 60 "kube-scheduler /healthz" curl -skf --max-time 1 https://127.0.0.1:10259/healthz
wait_for 60 "multus-daemon /healthz" multus_healthy
# The daemon writes 00-multus.conf, which then sorts first: from here on every pod goes through Multus.
wait_for 30 "00-multus.conf" test -s "$CNI_CONF_DIR/00-multus.conf"
step_done "kcm + scheduler + multus ready"
# The node-lifecycle controller lifts the not-ready taint a moment after the kubelet reports Ready.
wait_for 120 "node $NODE_NAME Ready and untainted" node_schedulable
step_done "node Ready"

# The service-account controller creates "default" a moment after the namespace exists; tests create
# pods right away, so make sure it is there.
if ! kubectl get serviceaccount default >/dev/null 2>&1; then
  kubectl create serviceaccount default >/dev/null 2>&1 || kubectl get serviceaccount default >/dev/null
fi
wait_for 30 "NAD CRD established" kubectl wait --for=condition=Established --timeout=1s \
  crd/network-attachment-definitions.k8s.cni.cncf.io
write_env_file
step_done "finishing"

print_timings "cluster up in $(fmt_ms $(( $(now_ms) - T0 )))"
print_usage_hint
