"""Checkpoint files shared by every trainer: atomic writes, training state, RNG, resume discovery.

Two kinds of file, kept apart on purpose:

* weights files: a plain ``state_dict`` (what robots and other people's code load);
* training-state files: a dict of plain data (tensors, numbers, strings, lists, dicts) with
  everything needed to continue a run exactly. Plain data means ``torch.load(weights_only=True)``
  can read it, so resuming never executes pickled code.

Stable API (the keypoint trainer uses it too; keep the signatures):
  atomic_save(obj, path)                 torch.save, atomically
  atomic_write(path, write)              write(binary_file) into a temp file, then rename
  save_state(path, model, optimizer, epoch, step, config, scaler=None, extra=None)
  load_state(path, map_location="cpu") -> dict
  is_state(obj) -> bool
  restore_state(state, model=None, optimizer=None, scaler=None, rng=True)
  capture_rng() -> dict      restore_rng(rng_dict)
  find_latest_state(directory, pattern="*state*.pth") -> path or None
  unwrap(model) -> the bare nn.Module (no DDP / DataParallel / torch.compile wrapper)
  strip_prefix(state_dict, prefix="module.")   add_prefix(state_dict, prefix="module.")
"""
import glob
import os
import random
import tempfile

import numpy as np
import torch

from pose_train.errors import UserError

STATE_FORMAT = "pose-train-state"
STATE_VERSION = 1


def atomic_save(obj, path):
    """torch.save ``obj`` to ``path`` atomically (see atomic_write)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temp file in the same folder, fsync, then os.replace.

    A kill at any moment leaves either the old file or the new one, never a truncated file:
    os.replace is atomic within one filesystem, which is why the temp file sits beside ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; give the usual umask-based mode so other users (and
        # containers running as another uid) can read the checkpoint.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        # Covers KeyboardInterrupt too: never leave temp files behind, then re-raise.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unwrap(model):
    """The bare module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):      # torch.compile's OptimizedModule
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        else:
            return model


def strip_prefix(state_dict, prefix="module."):
    """Drop ``prefix`` from every key that has it (others are kept as they are)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def add_prefix(state_dict, prefix="module."):
    """Add ``prefix`` to every key that lacks it."""
    return {(k if k.startswith(prefix) else prefix + k): v for k, v in state_dict.items()}


def capture_rng():
    """Python, NumPy and torch (CPU and every CUDA device) generator states as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    rng = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available():
        rng["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return rng


def restore_rng(rng):
    """Inverse of capture_rng. CUDA states are restored only if the device count matches."""
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_state(path, model, optimizer, epoch, step, config, scaler=None, extra=None):
    """Write a training-state file atomically.

    epoch/step: where training continues from (``step`` = optimizer steps already done inside
    ``epoch``; 0 means the epoch starts from its first batch). config: plain-data dict of the run's
    arguments. extra: plain-data dict for trainer-specific facts (e.g. input normalisation).
    The model is stored without any wrapper prefix.
    """
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "rng": capture_rng(),
        "config": dict(config),
        "extra": dict(extra or {}),
    }
    return atomic_save(state, path)


def is_state(obj):
    """True if ``obj`` (a loaded file) is a training state rather than a weights dict."""
    return isinstance(obj, dict) and obj.get("format") == STATE_FORMAT


def load_file(path, map_location="cpu"):
    """torch.load with weights_only=True; a clear UserError for a missing or damaged file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError("%s: no such checkpoint file; check the path" % path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged/foreign files
        raise UserError("%s: cannot be read as a plain checkpoint (%s: %s); pass a .pth written "
                        "by torch.save of a state dict or a pose-train training state"
                        % (path, type(err).__name__, str(err).splitlines()[0] if str(err) else ""))


def load_state(path, map_location="cpu"):
    """Load a training-state file; UserError if the file is something else."""
    obj = load_file(path, map_location)
    if not is_state(obj):
        raise UserError("%s is a weights file, not a pose-train training state; use it as "
                        "initial weights instead" % path)
    if obj.get("version", 0) > STATE_VERSION:
        raise UserError("%s was written by a newer pose-train (state version %s); upgrade"
                        % (path, obj.get("version")))
    return obj


def restore_state(state, model=None, optimizer=None, scaler=None, rng=True):
    """Put a loaded state back into live objects. Returns (epoch, step) to continue from."""
    if model is not None:
        unwrap(model).load_state_dict(state["model"], strict=True)
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if rng and state.get("rng") is not None:
        restore_rng(state["rng"])
    return state["epoch"], state["step"]


def find_latest_state(directory, pattern="*state*.pth"):
    """Newest training-state file in ``directory`` (by modification time), or None.

    Temp files from interrupted writes start with '.' and end in '.tmp', so the glob skips them.
    """
    if not directory or not os.path.isdir(directory):
        return None
    paths = [p for p in glob.glob(os.path.join(directory, pattern))
             if os.path.isfile(p) and not os.path.basename(p).startswith(".")]
    if not paths:
        return None
    return max(paths, key=os.path.getmtime)
