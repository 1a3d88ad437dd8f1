"""Load any checkpoint torch can read, on the modern side, without running its code.

Default: ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers, plus a short list of extra classes whose reconstruction cannot run code
(numpy arrays and scalars, pathlib paths, argparse.Namespace): old training scripts
pickled those beside the weights. An allow-list, never a deny-list: ``--trust NAME``
adds one global (``train.TrainConfig``) or a whole module (``train``), only those the user
names. A name that looks like a function (``timeit.timeit``) is code the file runs at load,
and the error says so instead of suggesting --trust. The classic command runners (os.system,
eval, ...) are refused even when named.
"""
import argparse
import codecs
import pathlib
import pickle
import types
import warnings

import torch

from pose_train_py27.legacy_format import CheckpointError, is_dangerous, scan_file
from pose_train_py27.verify import load_failure
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


def trusted(name, trust):
    """Whether the user's --trust names this global, its module or a package above it."""
    module = name.rpartition(".")[0]
    return any(name == t or module == t or module.startswith(t + ".") for t in trust)


def looks_callable(name):
    """A lower-case last part (timeit.timeit, cProfile.run) names a function, code the pickle
    calls; classes (TrainConfig, Mode) are capitalised. Only used to word the advice."""
    attr = name.rpartition(".")[2].lstrip("_")
    return not attr[:1].isupper()


class _AllowlistUnpickler(pickle.Unpickler):
    """Plain globals plus what --trust names: for the opcodes weights_only lacks (FRAME, p4+)
    and for the user's own classes. A named class this process cannot import is stubbed."""
    trust = ()

    def find_class(self, module, name):
        full = module + "." + name
        if not _plain_global(full) and not (trusted(full, self.trust) and not is_dangerous(full)):
            raise pickle.UnpicklingError("global %s is not allowed" % full)
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if _plain_global(full):
                raise
            # The training script's own classes (configs, enums) are only metadata here.
            return type(name, (_Stub,), {"__module__": module})


def _pickle_module(trust):
    """What torch.load takes as ``pickle_module``: its header pickles go through ``load``, the
    data through ``Unpickler``; both are held to the allow-list."""
    unpickler = type("Unpickler", (_AllowlistUnpickler,), {"trust": tuple(trust)})
    return types.SimpleNamespace(Unpickler=unpickler, __name__="pickle",
                                 load=lambda f, **kw: unpickler(f, **kw).load())


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
    if trust or scan.protocol > 2 or scan.format == "tar":
        # torch's weights-only unpickler stops at protocol-4 framing and knows no --trust;
        # ours allows the same plain globals, every opcode, and exactly what the user named.
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_pickle_module(trust), encoding=encoding)
    extra = {} if encoding == "utf-8" else {"encoding": encoding}
    with torch.serialization.safe_globals(harmless_globals()), warnings.catch_warnings():
        # torch warns that encoding is ignored with weights_only; its unpickler does use it.
        warnings.filterwarnings("ignore", message="pickle_load_args only works")
        return torch.load(path, map_location="cpu", weights_only=True, **extra)


def refuse_unlisted(path, scan, trust):
    """UserError before anything loads when the pickle names globals outside the allow-list."""
    odd = [g for g in scan.globals if not _plain_global(g) and not trusted(g, trust)]
    if not odd:
        return
    code = [g for g in odd if looks_callable(g)]
    if code:
        raise UserError("%s: its pickle calls %s when loaded: code, which weights never need; "
                        "refusing to load it (nothing was executed). Re-save the weights alone "
                        "(torch.save(model.state_dict(), ...)) where the file was made"
                        % (path, ", ".join(code)))
    raise UserError("%s: not a weights-only checkpoint (its pickle references %s); if you trust "
                    "its source, rerun with %s (each names a class the file may rebuild)"
                    % (path, ", ".join(odd), " ".join("--trust " + g for g in odd)))


def load_checkpoint(path, trust=()):
    """Return (object, scan). Python 2 pickles (byte strings, latin1 numpy) load too.

    ``trust``: globals or modules (``--trust`` values) allowed beyond the plain ones."""
    trust = tuple(trust or ())
    scan = scan_or_fail(path)
    refuse_unlisted(path, scan, trust)
    try:
        try:
            obj = _torch_load(path, trust, "utf-8", scan)
        except UnicodeDecodeError:
            # Python 2 str objects (numpy buffers, byte keys) are not UTF-8 text.
            obj = _torch_load(path, trust, "latin1", scan)
    except pickle.UnpicklingError as err:
        raise UserError("%s: cannot unpickle it (%s)" % (path, load_failure(err)))
    except (RuntimeError, EOFError, ValueError, KeyError) as err:
        raise UserError("%s: torch cannot load it (%s)" % (path, load_failure(err)))
    return obj, scan
