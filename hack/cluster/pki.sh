#!/usr/bin/env bash
# Creates the local cluster's PKI in one directory: a CA, the apiserver serving cert (SAN 127.0.0.1,
# so host-network pods reach the API without kube-proxy), client certs for admin, kubelet,
# apiserver->kubelet, controller-manager, scheduler and the Multus per-node identity, the
# service-account key pair, and a kubeconfig per client. ECDSA P-256 keys: generating them is
# near-instant, so a fresh PKI per cluster-up costs nothing.
#
# usage: pki.sh OUT_DIR NODE_NAME [MULTUS_CERT_DIR]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR NODE_NAME [MULTUS_CERT_DIR]" >&2; exit 2; }
out=$1 node=$2 multus_cert_dir=${3:-}
server=https://127.0.0.1:6443
mkdir -p "$out"
cd "$out"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

new_ca() {
  newkey ca
  openssl req -x509 -new -key ca.key -out ca.crt -days 3650 -subj "/CN=netplug-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
}

# cert NAME SUBJECT EXT_KEY_USAGE [SUBJECT_ALT_NAMES]: a key and a CA-signed certificate.
cert() {
  local name=$1 subject=$2 eku=$3 san=${4:-}
  newkey "$name"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$name.ext"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# kubeconfig NAME [CERT]: a kubeconfig for the local apiserver; without CERT it carries no credentials.
kubeconfig() {
  local name=$1 cert=${2:-} user='{}'
  [ -z "$cert" ] || user="{client-certificate: \"$PWD/$cert.crt\", client-key: \"$PWD/$cert.key\"}"
  cat > "$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: netplug-e2e
  cluster: {server: "$server", certificate-authority: "$PWD/ca.crt"}
users:
- name: $name
  user: $user
contexts:
- name: netplug-e2e
  context: {cluster: netplug-e2e, user: $name}
current-context: netplug-e2e
EOF
}

new_ca
# The leaf certificates only need the CA; make them side by side.
jobs=()
cert apiserver "/CN=kube-apiserver" serverAuth \
  "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" &
jobs+=($!)
cert admin "/O=system:masters/CN=netplug-e2e-admin" clientAuth & jobs+=($!)
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth & jobs+=($!)
cert kubelet "/O=system:nodes/CN=system:node:$node" clientAuth & jobs+=($!)
cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth & jobs+=($!)
cert kube-scheduler "/CN=system:kube-scheduler" clientAuth & jobs+=($!)
# Multus's perNodeCertificate mode uses <certDir>/multus-client-current.pem as is when it is valid.
cert multus "/O=system:multus/CN=system:multus:$node" clientAuth & jobs+=($!)
{ newkey sa && openssl pkey -in sa.key -pubout -out sa.pub; } & jobs+=($!)
for job in "${jobs[@]}"; do wait "$job" || { echo "pki.sh: generating a key or certificate failed" >&2; exit 1; }; done

kubeconfig admin admin
kubeconfig kubelet kubelet
kubeconfig kube-controller-manager kube-controller-manager
kubeconfig kube-scheduler kube-scheduler
kubeconfig multus-bootstrap
if [ -n "$multus_cert_dir" ]; then
  mkdir -p "$multus_cert_dir"
  cat multus.crt multus.key > "$multus_cert_dir/multus-client-current.pem"
fi
