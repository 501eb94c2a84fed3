#!/usr/bin/env bash
# Packs a directory into a one-layer image tarball in `docker save` (docker-archive) format, which
# `ctr images import` reads. No registry and no Docker engine are needed, and the same inputs give
# the same bytes (sorted entries, fixed mtimes and owners), so image IDs stay stable between runs.
#
# usage: mkimage.sh [-e KEY=VALUE]... REF ROOTFS_DIR OUT_TAR ENTRYPOINT_JSON [CMD_JSON]
#   -e KEY=VALUE      add an environment variable to the image config (repeatable; PATH is preset)
#   REF               image reference, e.g. localhost/netplug/pause:1.0
#   ENTRYPOINT_JSON   e.g. '["/pause"]' or 'null'; CMD_JSON defaults to null
set -euo pipefail

usage() { sed -n '5,8s/^# \{0,1\}//p' "$0" >&2; exit 2; }

env_vars=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
while getopts 'e:' opt; do
  case "$opt" in
    e) env_vars+=("$OPTARG") ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -lt 4 ] || [ $# -gt 5 ]; then usage; fi
ref=$1 rootfs=$2 out=$3 entrypoint=$4 cmd=${5:-null}
[ -d "$rootfs" ] || { echo "mkimage: $rootfs is not a directory" >&2; exit 1; }

out_dir=$(cd "$(dirname "$out")" && pwd)
work=$(mktemp -d "$out_dir/.mkimage.XXXXXX")
trap 'rm -rf "$work"' EXIT

tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
  -C "$rootfs" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)

jq -n --argjson entrypoint "$entrypoint" --argjson cmd "$cmd" --arg diff "sha256:$diff_id" \
  --args '{
    architecture: "amd64", os: "linux", created: "2020-01-01T00:00:00Z",
    config: {Env: $ARGS.positional, Entrypoint: $entrypoint, Cmd: $cmd, WorkingDir: "/"},
    rootfs: {type: "layers", diff_ids: [$diff]},
    history: [{created: "2020-01-01T00:00:00Z", created_by: "hack/build/images/mkimage.sh"}]
  }' "${env_vars[@]}" > "$work/config.json"
config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)

mkdir "$work/image" "$work/image/$diff_id"
mv "$work/config.json" "$work/image/$config_id.json"
mv "$work/layer.tar" "$work/image/$diff_id/layer.tar"
jq -n -c --arg cfg "$config_id.json" --arg ref "$ref" --arg layer "$diff_id/layer.tar" \
  '[{Config: $cfg, RepoTags: [$ref], Layers: [$layer]}]' > "$work/image/manifest.json"
tar --sort=name --mtime='2020-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
  -C "$work/image" -cf "$work/out.tar" manifest.json "$config_id.json" "$diff_id"
mv "$work/out.tar" "$out"
echo "mkimage: $out ($ref, config sha256:$config_id)"
