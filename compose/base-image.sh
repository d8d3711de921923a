#!/bin/sh
# Build the minimal Debian base the images start from when no registry is reachable:
# debootstrap (minbase, Python 3.11), then `docker import`. Needs root and Debian's mirror
# (the one apt uses here, or DEBIAN_MIRROR). Usage: compose/base-image.sh IMAGE_TAG
set -eu
TAG=${1:?usage: $0 IMAGE_TAG}
SUITE=${DEBIAN_SUITE:-bookworm}
command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install debootstrap" >&2; exit 1; }
ROOT=$(mktemp -d /tmp/scorestream-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT" ${DEBIAN_MIRROR:-} >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | docker import --change 'CMD ["/bin/bash"]' - "$TAG"
