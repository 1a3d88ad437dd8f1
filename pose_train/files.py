"""Writing files so that a kill at any moment leaves the old file or the new one, never half.

The one atomic writer of the project (checkpoints, sidecars, annotations, manifests all go
through it). Torch-free: the host launcher uses it too.
"""
import glob
import json
import os
import shutil
import tempfile

from pose_train.errors import UserError

TEMP_SUFFIX = ".tmp"


def _temp_prefix(path):
    # Hidden and named after the target: globs for the real file never match it, and
    # remove_stale_temps knows which leftovers are ours.
    return "." + os.path.basename(path) + "."


def atomic_write(path, write, binary=True, check=None):
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then os.replace it over path.

    ``check(temp_path)``, if given, runs on the complete temp file before it replaces
    ``path`` and may raise to abandon the write (convert reads its output back this way).
    The temp file sits in the same folder because os.replace is atomic only within one
    filesystem. On any failure (a KeyboardInterrupt too) the temp file is removed and the
    target is untouched; an OSError becomes one UserError line naming the file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:   # the folder must exist: a mistyped path is an error, not a new folder
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
    except OSError as err:
        raise UserError("%s: cannot write it (%s)" % (path, err.strerror or err))
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        # mkstemp makes 0600 files; other users (and containers running as another uid)
        # should read a checkpoint as they would any file this user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise UserError("%s: cannot write it (%s)" % (path, err.strerror or err))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_folder(path, fill):
    """Call ``fill(temp_folder)`` on a hidden folder beside ``path``, then rename it to
    ``path``: a folder that exists under its name is complete. On failure nothing is left."""
    path = os.fspath(path)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(path), dir=os.path.dirname(os.path.abspath(path)))
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return path


def atomic_write_json(path, data, **dump_kwargs):
    """``json.dump(data)`` to ``path`` atomically (sorted keys unless told otherwise)."""
    dump_kwargs.setdefault("indent", 1)
    dump_kwargs.setdefault("sort_keys", True)
    return atomic_write(path, lambda f: json.dump(data, f, **dump_kwargs), binary=False)


def remove_stale_temps(folder):
    """Delete temp files a killed write of ours left in ``folder``; returns how many.

    Only names of the form ``.<name>.<random>.tmp`` (what atomic_write makes) are touched. Call
    it at the start of a job, before anything of the job writes there.
    """
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(folder), ".*" + TEMP_SUFFIX)):
        if os.path.isfile(path) and os.path.basename(path).count(".") >= 3:
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass   # another process of the same run removed it first
    return removed


def report_stale_temps(folder):
    """remove_stale_temps, saying so when there were any (a job's first step)."""
    removed = remove_stale_temps(folder)
    if removed:
        print("removed %d temp file(s) a killed save left in %s" % (removed, folder))
    return removed


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
