#!/bin/sh
# Files written to the bind-mounted output folder should belong to the person who
# owns that folder, not to root. The launcher already passes --user; compose runs
# as root and lands here, so drop to the output folder's owner before running.
set -eu
out=${POSE_TRAIN_OUT:-}
if [ "$(id -u)" = 0 ] && [ -n "$out" ] && [ -d "$out" ]; then
  uid=${POSE_TRAIN_UID:-$(stat -c %u "$out")}
  gid=${POSE_TRAIN_GID:-$(stat -c %g "$out")}
  if [ "$uid" != 0 ]; then
    exec setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"
  fi
fi
exec "$@"
