#!/usr/bin/env bash
# Builds the two images the local cluster needs without a registry: the pause (sandbox) image from
# hack/build/images/pause and a busybox image for test pods from Debian's busybox-static. The tarballs are
# cached under $NETPLUG_CACHE/images, keyed by a hash of every input, so warm runs only hash files.
#
# usage: build-local-images.sh   (prints the directory holding pause.tar and busybox.tar)
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib.sh"

busybox_bin=$(command -v busybox) || die "busybox not found: install busybox-static (hack/cluster/install-deps.sh)"
# A dynamically linked busybox would not run in an image that holds nothing else.
if ldd "$busybox_bin" >/dev/null 2>&1; then die "$busybox_bin is dynamically linked: install busybox-static"; fi

key=$( { cat "$HACK/build/images/pause/main.go" "$HACK/build/images/mkimage.sh" "$0" "$busybox_bin"
         go env GOVERSION; echo "$PAUSE_IMAGE $BUSYBOX_IMAGE"; } | sha256sum | cut -c1-16)
out="$NETPLUG_CACHE/images/$key"
if [ -s "$out/pause.tar" ] && [ -s "$out/busybox.tar" ]; then echo "$out"; exit 0; fi

mkdir -p "$NETPLUG_CACHE/images"
work=$(mktemp -d "$NETPLUG_CACHE/images/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# pause: one static binary.
mkdir -p "$work/pause-root"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/pause-root/pause" ./hack/build/images/pause)
"$HACK/build/images/mkimage.sh" "$PAUSE_IMAGE" "$work/pause-root" "$work/pause.tar" '["/pause"]' >&2

# busybox: the static binary plus one symlink per applet, and the files `id`/`ls -l` expect.
bb="$work/busybox-root"
mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/root"
cp "$busybox_bin" "$bb/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$bb/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bb/etc/passwd"
echo 'root:x:0:' > "$bb/etc/group"
chmod 1777 "$bb/tmp"
"$HACK/build/images/mkimage.sh" "$BUSYBOX_IMAGE" "$bb" "$work/busybox.tar" 'null' '["/bin/sh"]' >&2

mkdir -p "$out"
mv "$work/pause.tar" "$work/busybox.tar" "$out/"
echo "$out"
