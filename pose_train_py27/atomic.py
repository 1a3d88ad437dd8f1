# -*- coding: utf-8 -*-
"""The one atomic file writer, for both runtimes (pose_train.files wraps it with its errors).

A kill at any moment leaves the old file or the new one, never half of one.
"""
from __future__ import absolute_import

import os
import tempfile

TEMP_SUFFIX = ".tmp"


def temp_prefix(path):
    # Hidden and named after the target: globs for the real file never match it, and
    # pose_train.files.remove_stale_temps knows which leftovers are ours.
    return "." + os.path.basename(path) + "."


def write_atomic(path, write, binary=True, check=None):
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then rename it over path.

    ``check(temp_path)``, if given, runs on the complete temp file first and may raise to
    abandon the write. The temp file sits in the target's folder because a rename is atomic
    only within one filesystem; the folder must exist. On any failure (KeyboardInterrupt
    too) the temp file is removed and the target is untouched. OSError propagates.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        # mkstemp makes 0600 files; other users (and containers running as another uid)
        # should read the result as they would any file this user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        os.rename(tmp, path)   # replaces on POSIX; Python 2 has no os.replace
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
