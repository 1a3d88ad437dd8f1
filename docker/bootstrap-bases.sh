#!/usr/bin/env bash
# Build the two base images from Debian packages when no registry can be pulled
# from (CI). Tarballs are cached, so a second run only re-imports.
#   modern base:      Debian bookworm + python3 (3.11, the CPU lock's cp311 torch wheel) + Mesa EGL
#   modern CUDA base: Ubuntu noble + python3 (3.12, the CUDA lock's; the OS of the users'
#                     nvidia/cuda:*-ubuntu24.04 base), from archive.ubuntu.com
#   legacy base:      Debian bullseye + python2.7 (the last Debian release shipping it)
set -euo pipefail
CACHE=${POSE_TRAIN_CI_CACHE:-/var/cache/pose-train-ci}/bases
mkdir -p "$CACHE"

# The Ubuntu archive's signing keys, from Debian's package of them (hash-pinned): debootstrap
# checks noble's Release file with them.
UBUNTU_KEYRING_DEB=http://deb.debian.org/debian/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1-0.2_all.deb
UBUNTU_KEYRING_SHA256=b2e7ed48431bf9e7978ae810bbdaf253093570d6e3f864e575b7c13554b81174
ubuntu_keyring() {
  local keyring="$CACHE/ubuntu-archive-keyring.gpg"
  if [ ! -s "$keyring" ]; then
    local tmp; tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/k.deb" "$UBUNTU_KEYRING_DEB"
    echo "$UBUNTU_KEYRING_SHA256  $tmp/k.deb" | sha256sum -c --quiet >&2
    dpkg-deb -x "$tmp/k.deb" "$tmp/x"
    cp "$tmp/x/usr/share/keyrings/ubuntu-archive-keyring.gpg" "$keyring"
    rm -rf "$tmp"
  fi
  echo "$keyring"
}

bootstrap() {  # name suite packages [tarball name [debootstrap options and mirror/script args]]
  local name=$1 suite=$2 pkgs=$3 tarball="$CACHE/${4:-$2}.tar"
  shift 4 2>/dev/null || shift $#
  if docker image inspect "$name" >/dev/null 2>&1; then return; fi
  if [ ! -s "$tarball" ]; then
    local root; root=$(mktemp -d)
    # "$@": debootstrap's own options first, then (after "--") its MIRROR and SCRIPT arguments.
    local opts=() rest=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift && rest=("$@")
    debootstrap --variant=minbase "${opts[@]}" --include="$pkgs" "$suite" "$root" "${rest[@]}" >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # Fixed mtimes keep the tarball (and the imported layer digest) stable across runs.
    tar --sort=name --mtime=@0 --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import -c 'ENV LANG=C.UTF-8' "$tarball" "$name" >&2
}

# libegl1 ... libgl1-mesa-dri: synth dope --mesh's headless OpenGL (Mesa's EGL and llvmpipe), as
# the modern Dockerfile installs them on a base without (new names: a cached base lacks them).
EGL=libegl1,libgl1,libegl-mesa0,libgl1-mesa-dri
bootstrap pose-train-base/bookworm-python3-egl:local bookworm python3,python3-venv,python3-pip,ca-certificates,$EGL \
  bookworm-egl
# libglib2.0-0: the legacy image's OpenCV wheel links libgthread-2.0, as ROS bases carry it
# (a new name, so a cached base without it is not reused).
bootstrap pose-train-base/bullseye-python2-glib:local bullseye python2.7,ca-certificates,libglib2.0-0 \
  bullseye-glib
# noble: debootstrap 1.0.128 has no script of that name; gutsy's serves every Ubuntu release.
bootstrap pose-train-base/noble-python3-egl:local noble python3,python3-venv,ca-certificates,$EGL noble-egl \
  --keyring="$(ubuntu_keyring)" --components=main,universe -- http://archive.ubuntu.com/ubuntu \
  /usr/share/debootstrap/scripts/gutsy
echo pose-train-base/bookworm-python3-egl:local pose-train-base/bullseye-python2-glib:local pose-train-base/noble-python3-egl:local
