"""Checkpoint files shared by every trainer: atomic writes, training state, RNG, resume discovery.

Two kinds of file, kept apart on purpose:

* weights files: a plain ``state_dict`` (what robots and other people's code load);
* training-state files: a dict of plain data (tensors, numbers, strings, lists, dicts) with
  everything needed to continue a run exactly. Plain data means ``torch.load(weights_only=True)``
  can read it, so resuming never executes pickled code.
"""
import os
import random
import warnings

import numpy as np
import torch

from pose_train import environment
from pose_train.errors import UserError
from pose_train.files import atomic_write
from pose_train_py27.keys import strip_prefix
from pose_train_py27.verify import load_failure

# Not *.pth: DOPE's inference.py and other tools load every .pth in a weights folder.
STATE_NAME = "training_state.pt"
STATE_NAMES = (STATE_NAME, "training_state.pth")     # the name before pose-train 0.2
STATE_FORMAT = "pose-train-state"
# 2: every trainer counts ``epoch`` from 1 and keeps its input normalisation as a dict in
# ``extra["normalization"]``. Version 1 keypoint states counted from 0 (upgraded on load).
STATE_VERSION = 2


def atomic_save(obj, path):
    """torch.save ``obj`` to ``path`` atomically (pose_train.files.atomic_write)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def unwrap(model):
    """The bare module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):      # torch.compile's OptimizedModule
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        else:
            return model


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


def save_state(path, model, optimizer, epoch, step, config, scaler=None, extra=None,
               epoch_loss=None):
    """Write a training-state file atomically.

    epoch/step: where training continues from, epochs counted from 1 (``step`` = optimizer steps
    already done inside ``epoch``; 0 means the epoch starts from its first batch). config:
    plain-data dict of the run's arguments. extra: plain-data dict of trainer facts; every
    trainer puts its input normalisation there as ``extra["normalization"]`` (a dict).
    epoch_loss: (loss sum, steps) of ``epoch`` so far when it stopped mid-epoch, so the resumed
    epoch's mean covers all of it. The model is stored without any wrapper prefix.
    """
    extra = dict(extra or {})
    if epoch_loss is not None and step:
        extra["epoch_loss"] = [float(epoch_loss[0]), int(epoch_loss[1])]
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
        "extra": extra,
    }
    return atomic_save(state, path)


def same_steps_mid_epoch(path, state, args, flags):
    """A state saved mid-epoch continues at a step counted in its batches: another batch size
    or --accumulate would start that epoch at the wrong images. ``flags``: the step-size
    arguments, each with the flag users type for it."""
    if not state.get("step"):
        return
    saved = state.get("config", {})
    for name, flag in flags.items():
        if name in saved and saved[name] != getattr(args, name):
            raise UserError("%s stopped mid-epoch (epoch %d step %d) with %s %s; resume it with "
                            "%s %s (another value is fine from the next epoch's state on)"
                            % (path, state["epoch"], state["step"], flag, saved[name], flag,
                               saved[name]))


def epoch_loss(state):
    """(loss sum, steps) of the epoch a mid-epoch state stopped in; (0.0, 0) otherwise (or
    from a state written before this was kept)."""
    kept = state["extra"].get("epoch_loss") if state and state.get("step") else None
    return (float(kept[0]), int(kept[1])) if kept else (0.0, 0)


def is_state(obj):
    """True if ``obj`` (a loaded file) is a training state rather than a weights dict."""
    return isinstance(obj, dict) and obj.get("format") == STATE_FORMAT


def load_file(path, map_location="cpu"):
    """torch.load with weights_only=True; a clear UserError for a missing or damaged file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError("%s: no such checkpoint file; check the path" % path)
    try:
        with warnings.catch_warnings():
            # torch's protocol-4 note asks users to file an issue; the failure says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged/foreign files
        raise UserError("%s: cannot be read as a plain checkpoint (%s: %s); pass a .pth written "
                        "by torch.save of a state dict or a pose-train training state"
                        % (path, type(err).__name__, load_failure(err)))


def weights_of(obj, path):
    """The state dict inside a loaded file: a weights file, a pose-train training state, or
    the ``{"state_dict": ...}`` other trainers write."""
    if is_state(obj):
        return obj["model"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    raise UserError("%s holds no state dict; pass a weights file (.pth/.pkl) or a "
                    "training_state.pt" % path)


def load_weights(model, path, obj=None, network="the network", hint=""):
    """The one strict loader: ``path``'s weights (``module.`` dropped) into ``model``.

    Keys and shapes must match exactly, else one UserError naming the file, what is missing or
    unexpected (a few examples and the counts) and ``hint``. ``obj``: the already-loaded file.
    """
    state = strip_prefix(weights_of(load_file(path) if obj is None else obj, path))
    bare = unwrap(model)
    own = bare.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        raise UserError("%s does not match %s: missing %s; unexpected %s%s"
                        % (path, network, _describe(missing) or "none",
                           _describe(unexpected) or "none", hint))
    bad = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise UserError("%s: shapes differ from %s for %s%s" % (path, network, _describe(bad),
                                                                 hint))
    bare.load_state_dict(state, strict=True)
    return state


def _describe(keys, limit=4):
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (" ... (%d in all)" % len(keys) if len(keys) > limit else "")


def load_state(path, map_location="cpu"):
    """Load a training-state file; UserError if the file is something else."""
    obj = load_file(path, map_location)
    if not is_state(obj):
        raise UserError("%s is a weights file, not a pose-train training state; use it as "
                        "initial weights instead" % path)
    if obj.get("version", 0) > STATE_VERSION:
        raise UserError("%s was written by a newer pose-train (state version %s); upgrade"
                        % (path, obj.get("version")))
    return _upgrade(obj)


def _upgrade(state):
    """A version-1 state in today's schema (the keypoint trainer's was the odd one out)."""
    extra = state.setdefault("extra", {})
    if state.get("version", 1) < 2 and "normalisation" in extra:
        state["epoch"] = int(state["epoch"]) + 1
        extra["normalization"] = {"name": extra.pop("normalisation")}
    state["version"] = STATE_VERSION
    return state


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


def find_latest_state(directory, names=STATE_NAMES):
    """Newest training-state file in ``directory`` among ``names`` (by modification time), or
    None. The old ``.pth`` name is still found, so runs from before the rename resume."""
    if not directory or not os.path.isdir(directory):
        return None
    paths = [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]
    return max(paths, key=os.path.getmtime) if paths else None


def refuse_an_earlier_run(outf, patterns):
    """A new run (no --resume, no --net) into a folder that holds another run's weights or
    state would overwrite them and report the old net_best as its own: refused, naming the
    files and the two ways on."""
    import glob
    earlier = sorted({os.path.basename(p) for pattern in patterns
                      for p in glob.glob(os.path.join(glob.escape(outf), pattern))})
    if earlier:
        # Under compose (it sets CONTINUE_SKIP) the run's folder is the mount: a new run goes
        # in a folder inside it, or the container's copy is lost with the container.
        other = (" (e.g. --outf %s)" % os.path.join(outf, "run2")
                 if os.environ.get(environment.CONTINUE_SKIP) else "")
        raise UserError("--outf %s holds an earlier run (%s); continue it by adding --resume auto to "
                        "the command, or pass another --outf%s for a new run"
                        % (outf, ", ".join(earlier[:4]) + (", ..." if len(earlier) > 4 else ""), other))
