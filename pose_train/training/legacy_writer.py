"""Write the torch < 1.6 ("legacy") file format that torch 1.4 on Python 2.7 reads.

torch.save(..., _use_new_zipfile_serialization=False) writes the same format, but it
names storages after memory addresses (so two conversions of one file differ byte for
byte), keeps whatever views and tensor metadata the tensors carry, and uses whatever
pickle protocol it is given. This writer emits exactly what torch 1.4 expects and
nothing else: pickle protocol 2, one storage per tensor numbered 0, 1, 2 ..., the
6-argument ``_rebuild_tensor_v2``, and storages written in key order. Same input,
same bytes: that is what makes the legacy -> modern -> legacy round trip bit-exact.
"""
import collections
import io
import pickle
import struct
import sys

import torch
from torch._utils import _rebuild_tensor_v2

from pose_train_py27.legacy_format import LEGACY_MAGIC, LEGACY_PROTOCOL_VERSION

# The storage class torch 1.4 knows for each dtype this writer accepts.
STORAGE_FOR_DTYPE = {
    torch.float32: torch.FloatStorage, torch.float64: torch.DoubleStorage,
    torch.float16: torch.HalfStorage, torch.bfloat16: torch.BFloat16Storage,
    torch.int64: torch.LongStorage, torch.int32: torch.IntStorage,
    torch.int16: torch.ShortStorage, torch.int8: torch.CharStorage,
    torch.uint8: torch.ByteStorage, torch.bool: torch.BoolStorage,
}

_SYS_INFO = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 4}}


class _StorageRef:
    """Stands for one tensor's storage in the object pickle (see persistent_id)."""

    def __init__(self, key, tensor):
        self.key, self.tensor = key, tensor


class _Pickler(pickle.Pickler):
    def __init__(self, handle, storages):
        super().__init__(handle, protocol=2)
        self._storages = storages

    def reducer_override(self, obj):
        if not isinstance(obj, torch.Tensor):
            return NotImplemented
        if obj.dtype not in STORAGE_FOR_DTYPE:
            raise ValueError("dtype %s has no torch 1.4 storage" % (obj.dtype,))
        # A private, dense, contiguous copy: no shared storages, views, or neg/conj bits.
        data = obj.detach().resolve_conj().resolve_neg().to("cpu").contiguous()
        ref = _StorageRef(str(len(self._storages)), data)
        self._storages.append(ref)
        stride = tuple(data.stride())
        return _rebuild_tensor_v2, (ref, 0, tuple(data.shape), stride, False,
                                    collections.OrderedDict())

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            storage_type = STORAGE_FOR_DTYPE[obj.tensor.dtype]
            return ("storage", storage_type, obj.key, "cpu", obj.tensor.numel(), None)
        return None


def _raw_bytes(tensor):
    flat = tensor.reshape(-1)
    if flat.numel() == 0:
        return b""
    return memoryview(flat.view(torch.uint8).numpy()) if flat.dtype != torch.uint8 else \
        memoryview(flat.numpy())


def write_legacy(obj, handle):
    """Serialise ``obj`` (dicts, lists, tensors, plain Python values) to a binary handle."""
    if sys.byteorder != "little":
        raise RuntimeError("the legacy format written here is little-endian only")
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL_VERSION, _SYS_INFO):
        pickle.dump(header, handle, protocol=2)
    storages = []
    _Pickler(handle, storages).dump(obj)
    pickle.dump([ref.key for ref in storages], handle, protocol=2)
    # torch's loader reads the raw storages in the order of the key list above.
    for ref in storages:
        handle.write(struct.pack("<q", ref.tensor.numel()))
        handle.write(_raw_bytes(ref.tensor))


def save_legacy(obj, path):
    """Write ``obj`` to ``path`` in the legacy format (see write_legacy)."""
    with open(path, "wb") as handle:
        write_legacy(obj, handle)


def legacy_bytes(obj):
    buf = io.BytesIO()
    write_legacy(obj, buf)
    return buf.getvalue()
