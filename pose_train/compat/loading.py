"""Load any checkpoint torch can read, on the modern side, without running its code.

Default: ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers, plus a short list of extra classes whose reconstruction cannot run code
(numpy arrays and scalars, pathlib paths, argparse.Namespace): old training scripts
pickled those beside the weights. Anything else needs ``--trust``; even then the
globals that only ever serve to run commands (os.system, eval, ...) are refused.
"""
import argparse
import codecs
import pathlib
import pickle
import types
import warnings

import torch

from pose_train_py27.legacy_format import CheckpointError, is_dangerous, scan_file
from pose_train.errors import UserError


def _numpy_globals():
    """numpy's array/scalar/dtype rebuilders under both their numpy 1 and numpy 2 names."""
    try:
        import numpy as np
        from numpy._core import multiarray
    except ImportError:  # numpy < 2 or no numpy: nothing numpy-made can be in the file anyway
        return []
    found = [np.ndarray, np.dtype, codecs.encode, multiarray._reconstruct, multiarray.scalar,
             (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
             (multiarray.scalar, "numpy.core.multiarray.scalar")]
    found += [cls for cls in vars(np.dtypes).values() if isinstance(cls, type)]
    return found


def harmless_globals():
    return _numpy_globals() + [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath,
                               pathlib.PureWindowsPath, argparse.Namespace]


def _name_of(entry):
    if isinstance(entry, tuple):
        return entry[1]
    return "%s.%s" % (entry.__module__, entry.__qualname__)


def _plain_global(name):
    """Globals a weights-only load accepts: tensor rebuilders, storages, dtypes, containers."""
    module, _, attr = name.rpartition(".")
    # Only the rebuilders: torch._utils also holds _import_dotted_name, which returns any
    # attribute of any module (os.system included) for a REDUCE to call.
    if name.startswith("torch._utils._rebuild_") or (module in ("torch", "torch.storage") and (
            attr.endswith("Storage") or isinstance(getattr(torch, attr, None), torch.dtype))):
        return True
    plain = set(["collections.OrderedDict", "torch.Size", "torch.device", "builtins.set",
                 "__builtin__.set", "torch._tensor._rebuild_from_type_v2",
                 "torch.nn.parameter.Parameter"])
    return name in plain or name in set(map(_name_of, harmless_globals()))


class _Stub:
    """Stands in for a class the file names but this process cannot import (--trust only)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if is_dangerous(module + "." + name):
            raise pickle.UnpicklingError("refusing %s.%s" % (module, name))
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            # The training script's own classes (configs, enums) are only metadata here.
            return type(name, (_Stub,), {"__module__": module})


class _AllowlistUnpickler(pickle.Unpickler):
    """Plain globals only: what weights_only allows, for the opcodes it lacks (FRAME, p4+)."""

    def find_class(self, module, name):
        if not _plain_global(module + "." + name):
            raise pickle.UnpicklingError("global %s.%s is not allowed" % (module, name))
        return super().find_class(module, name)


_tolerant_pickle = types.SimpleNamespace(Unpickler=_TolerantUnpickler, load=pickle.load,
                                         __name__="pickle")
_allowlist_pickle = types.SimpleNamespace(Unpickler=_AllowlistUnpickler, load=pickle.load,
                                          __name__="pickle")


def scan_or_fail(path):
    """Scan ``path`` without executing it; UserError naming the file when it is unusable."""
    try:
        scan = scan_file(path)
    except CheckpointError as err:
        raise UserError("%s: %s" % (path, err))
    except (IOError, OSError) as err:
        raise UserError("%s: cannot read it (%s)" % (path, err.strerror or err))
    danger = [g for g in scan.globals if is_dangerous(g)]
    if danger:
        raise UserError("%s: its pickle calls %s, which no checkpoint needs; refusing to load "
                        "it (nothing was executed)" % (path, ", ".join(danger)))
    return scan


def _torch_load(path, trust, encoding, scan):
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_tolerant_pickle, encoding=encoding)
    if scan.protocol > 2 and all(_plain_global(g) for g in scan.globals):
        # torch's weights-only unpickler stops at protocol-4 framing; ours allows the same
        # globals and every opcode.
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_allowlist_pickle, encoding=encoding)
    extra = {} if encoding == "utf-8" else {"encoding": encoding}
    with torch.serialization.safe_globals(harmless_globals()), warnings.catch_warnings():
        # torch warns that encoding is ignored with weights_only; its unpickler does use it.
        warnings.filterwarnings("ignore", message="pickle_load_args only works")
        return torch.load(path, map_location="cpu", weights_only=True, **extra)


def load_checkpoint(path, trust=False):
    """Return (object, scan). Python 2 pickles (byte strings, latin1 numpy) load too."""
    scan = scan_or_fail(path)
    if scan.format == "tar" and not trust:
        raise UserError("%s: a torch <= 0.3 tar-format file; torch cannot load it weights-only: "
                        "rerun with --trust if you trust its source" % (path,))
    try:
        try:
            obj = _torch_load(path, trust, "utf-8", scan)
        except UnicodeDecodeError:
            # Python 2 str objects (numpy buffers, byte keys) are not UTF-8 text.
            obj = _torch_load(path, trust, "latin1", scan)
    except pickle.UnpicklingError as err:
        if trust:
            raise UserError("%s: cannot unpickle it even with --trust (%s)"
                            % (path, str(err).splitlines()[0]))
        odd = [g for g in scan.globals if not _plain_global(g)]
        raise UserError("%s: not a weights-only checkpoint (its pickle references %s); "
                        "rerun with --trust if you trust its source"
                        % (path, ", ".join(odd) or str(err).splitlines()[0]))
    except (RuntimeError, EOFError, ValueError) as err:
        raise UserError("%s: torch cannot load it (%s)" % (path, str(err).splitlines()[0]))
    return obj, scan
