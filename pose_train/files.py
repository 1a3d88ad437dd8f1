"""Writing files so that a kill at any moment leaves the old file or the new one, never half.

The one atomic writer of the project (checkpoints, sidecars, annotations, manifests all go
through it). Torch-free: the host launcher uses it too.
"""
import glob
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager

from pose_train import environment
from pose_train.errors import UserError
from pose_train_py27.atomic import TEMP_SUFFIX, temp_prefix, write_atomic


def sha256_of(path):
    """The file's sha256, read a MiB at a time (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path, write, binary=True, check=None):
    """pose_train_py27.atomic.write_atomic: ``write(file)`` on a temp file beside ``path``,
    fsync, ``check(temp_path)`` if given, then rename it over ``path``; on any failure the
    target is untouched. An OSError becomes one UserError line naming the file."""
    path = os.fspath(path)
    try:
        return write_atomic(path, write, binary, check)
    except OSError as err:
        raise UserError("%s: cannot write it (%s)" % (path, err.strerror or err))


def atomic_folder(path, fill):
    """Call ``fill(temp_folder)`` on a hidden folder beside ``path``, then rename it to
    ``path``: a folder that exists under its name is complete. On failure nothing is left."""
    path = os.fspath(path)
    tmp = tempfile.mkdtemp(prefix=temp_prefix(path), dir=os.path.dirname(os.path.abspath(path)))
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return path


def make_folder(path, flag="--outf", shown=None):
    """Make the output folder ``path`` and prove it takes a file, or one UserError line naming
    it: a file in the way, no permission, or a place the kernel refuses (/proc, /sys, an
    immutable or read-only mount), which os.access passes for root. Returns ``path``."""
    from pose_train_py27.dope_io import output_folder   # cv2: not at start-up
    output_folder(path, flag, shown)
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        raise UserError("%s %s: cannot write there (%s); pass another %s"
                        % (flag, shown or path, err.strerror or err, "path" if shown else "folder"))
    return path


@contextmanager
def job_folder(path, claim=False, flag="--outf", shown=None):
    """Make the output folder ``path`` for a job; if the job fails (or is stopped) before
    writing anything there, remove it again, so a refused run leaves no empty folder behind.
    ``claim``: hold pose_train_py27.dope_io.OutputClaim's lock on it (one run per folder)
    meanwhile. ``flag``/``shown``: how make_folder names it when it cannot be made."""
    from pose_train_py27.dope_io import OutputClaim   # cv2: not at start-up
    path = os.fspath(path)
    made = not os.path.isdir(path)
    make_folder(path, flag, shown)
    try:
        with ExitStack() as held:
            if claim:
                held.enter_context(OutputClaim(path))
            yield path
    except BaseException:
        if made and set(os.listdir(path)) <= {OutputClaim.LOCK}:
            shutil.rmtree(path, ignore_errors=True)   # nothing of the job's is there
        raise


def host_path(path):
    """``path`` as the user knows it: in a job the launcher runs (it sets RUN_ID), a host path
    is mounted at HOST_PREFIX + that path. For what a user copies out of a file we write (the
    job's terminal lines are rewritten by the launcher itself)."""
    path = os.path.abspath(path)
    prefix = environment.HOST_PREFIX + os.sep
    if os.environ.get(environment.RUN_ID) and path.startswith(prefix):
        return path[len(environment.HOST_PREFIX):]
    return path


def atomic_write_json(path, data, **dump_kwargs):
    """``json.dump(data)`` to ``path`` atomically (sorted keys unless told otherwise)."""
    dump_kwargs.setdefault("indent", 1)
    dump_kwargs.setdefault("sort_keys", True)
    dump_kwargs.setdefault("allow_nan", False)   # NaN/Infinity are not JSON: other readers refuse them
    return atomic_write(path, lambda f: json.dump(data, f, **dump_kwargs), binary=False)


def remove_stale_temps(folder):
    """Delete temp files and scratch folders a killed write of ours left in ``folder``; returns
    how many. Only names of the form ``.<name>.<random>.tmp`` (what atomic_write and export
    make) are touched. Call
    it at the start of a job, before anything of the job writes there.
    """
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(folder), ".*" + TEMP_SUFFIX)):
        if os.path.basename(path).count(".") < 3 or os.path.islink(path):
            continue
        try:
            if os.path.isdir(path):      # a scratch folder (export onnx's graph.onnx, ~200 MB)
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass   # another process of the same run removed it first
    return removed


def report_stale_temps(folder):
    """remove_stale_temps, saying so when there were any (a job's first step)."""
    removed = remove_stale_temps(folder)
    if removed:
        print("removed %d temp file(s) a killed save or export left in %s" % (removed, folder))
    return removed


def write_sidecar(weights, meta):
    """pose_train_py27.sidecar.write, an OSError said as one line naming the file."""
    from pose_train_py27 import sidecar     # numpy and cv2: not for the launcher's start-up
    try:
        return sidecar.write(weights, meta)
    except OSError as err:
        raise UserError("%s: cannot write it (%s)" % (sidecar.path_of(weights), err.strerror or err))


def read_sidecar(path, normalization=False):
    """The json beside a weights file (net_epoch_10.json), or {} when there is none; with
    ``normalization``, the input normalisation it names (the ROS node's when none)."""
    from pose_train_py27 import sidecar
    meta = sidecar.read(path)
    return sidecar.normalization_of(meta, source=sidecar.path_of(path)) if normalization else meta
