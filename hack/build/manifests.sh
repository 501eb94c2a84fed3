#!/usr/bin/env bash
# Render one overlay of manifests/ with the image IMAGE:TAG into a single YAML file, and check it.
# Env: IMAGE (repository), TAG (tag, or a sha256:... digest), OVERLAY (containerd | crio | local),
#      OUT (default _out/netplug.yaml). Needs only kubectl (kustomize is built in) and jq.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGE=${IMAGE:-localhost/netplug/netplug-controller}
TAG=${TAG:-dev}
OVERLAY=${OVERLAY:-containerd}
OUT=${OUT:-$ROOT/_out/netplug.yaml}
# The image reference written in manifests/base/daemonset.yaml, which the "images" edit replaces.
BASE_IMAGE=localhost/netplug/netplug-controller

command -v kubectl >/dev/null || die "kubectl not found (it renders the manifests with its built-in kustomize)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"

overlay_dir=$ROOT/manifests/overlays/$OVERLAY
[ -f "$overlay_dir/kustomization.yaml" ] ||
  die "unknown OVERLAY=$OVERLAY; choose one of: $(cd "$ROOT/manifests/overlays" && echo */ | tr -d /)"
# The local overlay names the cluster's paths literally; a cluster elsewhere would not match them.
if [ "$OVERLAY" = local ] && [ "$CLUSTER_DIR" != /var/lib/netplug-e2e ]; then
  die "the local overlay expects CLUSTER_DIR=/var/lib/netplug-e2e, not $CLUSTER_DIR"
fi

if [[ $TAG =~ ^sha256:[0-9a-f]{64}$ ]]; then
  image_field="digest: $TAG"; image_ref="$IMAGE@$TAG"
else
  image_field="newTag: \"$TAG\""; image_ref="$IMAGE:$TAG"
fi

# A throw-away kustomization on top of the overlay sets the image: the tree is never edited. It
# lives under _out/ because kustomize takes only relative paths to other kustomizations.
mkdir -p "$ROOT/_out"
work=$(mktemp -d "$ROOT/_out/.render.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$work" "$overlay_dir")
images:
- name: $BASE_IMAGE
  newName: $IMAGE
  $image_field
EOF
kubectl kustomize "$work" >"$work/netplug.yaml"

# Read every object back offline (a no-op label edit parses each one; no server needed) and check
# what a typo in an overlay would break: the set of objects, where each lives (cluster-scoped ones
# carry no namespace, the others are in netplug-system), the image, that the DaemonSet mounts the
# generated (hashed) ConfigMap, the config JSON, and that each socket in the config sits in a
# directory the container mounts.
kubectl label --local --overwrite -f "$work/netplug.yaml" app.kubernetes.io/part-of=netplug -o json |
  jq -s --arg image "$image_ref" '
    def one(k): [.[] | select(.kind == k)] | if length == 1 then .[0] else error("want one \(k), have \(length)") end;
    ["ClusterRole","ClusterRoleBinding","DeviceClass","Namespace","ValidatingAdmissionPolicy","ValidatingAdmissionPolicyBinding"] as $cluster
    | (map(.kind) | sort) as $kinds
    | if $kinds != ["ClusterRole","ClusterRoleBinding","ConfigMap","DaemonSet","DeviceClass","DeviceClass","Namespace","Role","RoleBinding",
                    "ServiceAccount","ValidatingAdmissionPolicy","ValidatingAdmissionPolicyBinding"]
      then error("unexpected objects: \($kinds)") else . end
    | (.[] | select((.kind | IN($cluster[])) and .metadata.namespace != null)
           | error("\(.kind) \(.metadata.name) is cluster-scoped but has namespace \(.metadata.namespace)")),
      (.[] | select((.kind | IN($cluster[]) | not) and .metadata.namespace != "netplug-system")
           | error("\(.kind) \(.metadata.name) is in namespace \(.metadata.namespace), want netplug-system")),
      .
    | if one("ValidatingAdmissionPolicyBinding").spec.policyName != one("ValidatingAdmissionPolicy").metadata.name
      then error("the ValidatingAdmissionPolicyBinding does not bind the policy") else . end
    | one("ConfigMap") as $cm
    | ([one("DaemonSet").spec.template.spec.volumes[] | select(.name == "config") | .configMap.name]) as $ref
    | if $ref != [$cm.metadata.name] then error("the DaemonSet mounts ConfigMap \($ref), the manifests have \($cm.metadata.name)")
      elif ($cm.metadata.name | test("^netplug-config-[a-z0-9]+$") | not) then error("ConfigMap \($cm.metadata.name) has no content hash")
      else . end
    | ($cm.data["config.json"] | fromjson) as $cfg
    | one("DaemonSet").spec.template.spec.containers[0] as $c
    | if $c.image != $image then error("image is \($c.image), want \($image)") else . end
    | [$c.volumeMounts[].mountPath] as $mounts
    | [$cfg.criSocketPath, $cfg.multusSocketPath][]
    | select((ltrimstr("unix://") | sub("/[^/]*$"; "")) as $dir | $mounts | index([$dir]) | not)
    | error("socket \(.) is not in a mounted directory (mounts: \($mounts))")
  ' >/dev/null || die "rendered manifests for OVERLAY=$OVERLAY failed the checks above"

mkdir -p "$(dirname "$OUT")"
mv "$work/netplug.yaml" "$OUT"
log "wrote $OUT (overlay $OVERLAY, image $image_ref)"
