#!/usr/bin/env bash
# Print the path of a local Python 2.7 + torch 1.4 interpreter (pyenv's 2.7.18 with the
# legacy image's locked wheels installed with --target), building it once into the cache.
# The compat tests that drive an interpreter directly use it; the legacy image runs the same
# checks in tests/test_docker_legacy.py. Prints nothing when pyenv has no 2.7.18.
set -euo pipefail
cd "$(dirname "$0")/.."
py27="$(pyenv root 2>/dev/null || echo /nonexistent)/versions/2.7.18/bin/python2.7"
[ -x "$py27" ] || exit 0
dir="$POSE_TRAIN_CI_CACHE/legacy27-$(sha256sum docker/legacy/requirements.lock | cut -c1-16)"
if [ ! -x "$dir/python2.7" ]; then
  wheels="$POSE_TRAIN_WHEELHOUSE/legacy"
  python docker/lock.py fetch legacy --dest "$wheels" >/dev/null
  # pip/setuptools/wheel are the image's bootstrap; pyenv's interpreter has its own. No pip
  # config: this machine's constraints file speaks of modern torch.
  awk '/^(pip|setuptools|wheel)==/ { getline; next } { print }' docker/legacy/requirements.lock > "$dir.lock"
  PIP_CONFIG_FILE=/dev/null "$py27" -m pip install -q --disable-pip-version-check --no-index --find-links "$wheels" \
    --require-hashes --no-deps --target "$dir/site" -r "$dir.lock" >&2
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec "%s" "$@"\n' "$dir/site" "$py27" > "$dir/python2.7"
  chmod +x "$dir/python2.7"
fi
echo "$dir/python2.7"
