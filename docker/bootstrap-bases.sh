#!/usr/bin/env bash
# Build the two base images from Debian packages when no registry can be pulled
# from (CI). Tarballs are cached, so a second run only re-imports.
#   modern base: Debian bookworm + python3 (3.11, matches the cp311 torch wheel)
#   legacy base: Debian bullseye + python2.7 (the last Debian release shipping it)
set -euo pipefail
CACHE=${POSE_TRAIN_CI_CACHE:-/var/cache/pose-train-ci}/bases
mkdir -p "$CACHE"

bootstrap() {  # name suite packages [tarball name]
  local name=$1 suite=$2 pkgs=$3 tarball="$CACHE/${4:-$2}.tar"
  if docker image inspect "$name" >/dev/null 2>&1; then return; fi
  if [ ! -s "$tarball" ]; then
    local root; root=$(mktemp -d)
    debootstrap --variant=minbase --include="$pkgs" "$suite" "$root" >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # Fixed mtimes keep the tarball (and the imported layer digest) stable across runs.
    tar --sort=name --mtime=@0 --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import -c 'ENV LANG=C.UTF-8' "$tarball" "$name" >&2
}

bootstrap pose-train-base/bookworm-python3:local bookworm python3,python3-venv,python3-pip,ca-certificates
# libglib2.0-0: the legacy image's OpenCV wheel links libgthread-2.0, as ROS bases carry it
# (a new name, so a cached base without it is not reused).
bootstrap pose-train-base/bullseye-python2-glib:local bullseye python2.7,ca-certificates,libglib2.0-0 \
  bullseye-glib
echo pose-train-base/bookworm-python3:local pose-train-base/bullseye-python2-glib:local
