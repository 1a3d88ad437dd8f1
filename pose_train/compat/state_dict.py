"""Find the weights inside whatever a checkpoint holds and shape them for one consumer."""
import collections

import torch

from pose_train.errors import UserError
from pose_train_py27.keys import DP_PREFIX, add_prefix, strip_prefix

# Where training scripts (ours, DOPE's, kp6d's, timm's, Lightning's) keep the weights.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights",
                   "module", "state_dict_ema", "model_ema")
# torch.compile wraps the module; its parameters are saved as _orig_mod.<name>.
_COMPILE_PREFIX = "_orig_mod."

# dtypes torch 1.4 has no storage for, or that a consumer cannot load into its float net.
_REFUSED_KINDS = ("complex", "uint16", "uint32", "uint64", "float8", "int4", "uint1",
                  "uint2", "uint3", "uint4", "uint5", "uint6", "uint7", "qint", "quint",
                  "float4", "bits")


def is_tensor_like(value):
    try:
        import numpy as np
        if isinstance(value, np.ndarray):
            return True
    except ImportError:
        pass
    return isinstance(value, torch.Tensor)


def _looks_like_weights(obj):
    return isinstance(obj, dict) and obj and any(is_tensor_like(v) for v in obj.values())


def _text_key(key):
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


def _module_attrs(obj):
    """The attribute dict of a pickled module: a real Module's, or a --trust stub's state."""
    attrs = getattr(obj, "state", None)
    attrs = attrs if isinstance(attrs, dict) else getattr(obj, "__dict__", {})
    return attrs if "_modules" in attrs and "_parameters" in attrs else None


def module_tensors(obj, prefix=""):
    """state_dict() read off a pickled module's attributes, so a network whose class this
    process cannot import (the training script's own) still gives up its weights."""
    attrs = _module_attrs(obj)
    out = collections.OrderedDict()
    for name, tensor in (attrs.get("_parameters") or {}).items():
        if tensor is not None:
            out[prefix + name] = tensor
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for name, tensor in (attrs.get("_buffers") or {}).items():
        if tensor is not None and name not in skip:
            out[prefix + name] = tensor
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None and _module_attrs(child) is not None:
            out.update(module_tensors(child, prefix + name + "."))
    return out


def _from_module(obj):
    if isinstance(obj, torch.nn.Module):
        try:
            return obj.state_dict()
        except AttributeError:  # a real wrapper (DataParallel) around a stubbed network
            pass
    return module_tensors(obj)


def find_state_dict(obj):
    """Return (state dict, where it was found, names of what was left behind)."""
    if isinstance(obj, torch.nn.Module) or _module_attrs(obj) is not None:
        return _from_module(obj), "a pickled %s module" % type(obj).__name__, []
    if not isinstance(obj, dict):
        raise UserError("holds a %s, not a state dict or a dict containing one"
                        % type(obj).__name__)
    obj = {_text_key(k): v for k, v in obj.items()}
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, torch.nn.Module) or _module_attrs(inner) is not None:
            inner = _from_module(inner)
        if _looks_like_weights(inner):
            return inner, "key %r" % key, sorted(k for k in obj if k != key)
    if _looks_like_weights(obj):
        return obj, "top level", []
    raise UserError("no state dict found (top-level keys: %s)" % ", ".join(sorted(obj)[:12]))


def flatten(state, prefix=""):
    """Nested dicts of tensors -> one flat ``a.b.c`` dict (what load_state_dict takes)."""
    flat = collections.OrderedDict()
    for key, value in state.items():
        name = prefix + _text_key(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def to_tensor(key, value):
    """Tensors stay tensors; numpy arrays become tensors; anything else is refused."""
    if isinstance(value, torch.Tensor):
        return value
    if is_tensor_like(value):
        return torch.from_numpy(value.copy())
    raise UserError("entry %r is a %s, not a tensor; a state dict holds tensors only"
                    % (key, type(value).__name__))


def check_dtype(key, tensor):
    name = str(tensor.dtype).replace("torch.", "")
    if name.startswith(_REFUSED_KINDS) or tensor.is_complex():
        raise UserError("tensor %r has dtype %s, which torch 1.4 cannot represent; convert "
                        "that entry yourself or drop it" % (key, name))
    if tensor.layout != torch.strided:
        raise UserError("tensor %r is %s; only dense tensors can be converted"
                        % (key, tensor.layout))


def for_melodic(key, value):
    """A dense, contiguous, private CPU copy; fp16/bf16/fp64 become fp32 (see issue 4)."""
    tensor = to_tensor(key, value)
    check_dtype(key, tensor)
    tensor = tensor.detach().resolve_conj().resolve_neg().to("cpu")
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    return private(tensor)


def for_modern(key, value):
    tensor = to_tensor(key, value)
    if tensor.layout != torch.strided:
        raise UserError("tensor %r is %s; only dense tensors can be converted"
                        % (key, tensor.layout))
    return private(tensor.detach().resolve_conj().resolve_neg().to("cpu"))


def private(tensor):
    """Contiguous and owning exactly its own bytes: a view of a bigger storage is copied,
    so no file carries bytes outside the tensor and safetensors sees no shared memory."""
    tensor = tensor.contiguous()
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    return tensor if whole and tensor.storage_offset() == 0 else tensor.clone()


def strip_compile_prefix(state):
    return collections.OrderedDict(
        (k.replace(_COMPILE_PREFIX, "", 1) if k.startswith((_COMPILE_PREFIX,
                                                              DP_PREFIX + _COMPILE_PREFIX))
         else k, v) for k, v in state.items())


def set_prefix(state, want_prefix):
    """Every key bare (want_prefix False) or every key ``module.``-prefixed (True)."""
    return add_prefix(state) if want_prefix else strip_prefix(state)


def key_prefix(keys):
    """'module.' when every key has it, '' when none does, 'mixed' otherwise."""
    keys = list(keys)
    with_prefix = sum(1 for k in keys if k.startswith(DP_PREFIX))
    if keys and with_prefix == len(keys):
        return DP_PREFIX
    return "mixed" if with_prefix else ""
