# -*- coding: utf-8 -*-
"""Read what a checkpoint file is without unpickling it (Python 2.7 and 3).

torch.load runs the file's pickle, and a pickle can call any importable function
(os.system included). Everything here walks the opcodes with pickletools instead, so
the legacy verifier and ``pose-train inspect`` can say what a file is, which globals
it references and whether its storages are all there, before anything is loaded.

File kinds torch has written:
  zip     torch >= 1.6 default: a zip holding ``<name>/data.pkl`` + one member per storage.
  legacy  torch 0.4 .. 1.5 (and ``_use_new_zipfile_serialization=False``): five pickles
          (magic, protocol 1001, sys_info, the object, storage keys) then raw storages.
  tar     torch <= 0.3 era: a tar of ``pickle``, ``tensors``, ``storages``.
"""
from __future__ import absolute_import, division, print_function

import io
import pickle
import pickletools
import struct
import zipfile

from pose_train_py27.errors import InputError

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001

# Bytes per element of each typed storage a legacy file can name.
STORAGE_ELEMENT_SIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
    "ByteStorage": 1, "BoolStorage": 1,
}
# Storages torch 1.4 cannot load, but whose bytes we still need to step over when scanning.
_OTHER_ELEMENT_SIZE = {"ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
                       "UntypedStorage": 1, "QInt8Storage": 1, "QUInt8Storage": 1,
                       "QInt32Storage": 4}

# The only globals a flat state dict needs; the legacy verifier refuses anything else.
STATE_DICT_GLOBALS = set(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                          "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter"]
                         + ["torch." + name for name in STORAGE_ELEMENT_SIZE])

# Never needed by a checkpoint, and the classic ways a pickle runs commands: refused
# even with --trust.
_DANGEROUS_MODULES = ("os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pty",
                      "commands", "runpy", "importlib", "ctypes", "webbrowser", "code",
                      "pickle", "cPickle", "_pickle", "marshal", "types", "multiprocessing")
_DANGEROUS_BUILTINS = ("eval", "exec", "execfile", "compile", "open", "getattr", "setattr",
                       "delattr", "__import__", "apply", "input", "globals", "vars", "file")
# Importable helpers that fetch or load arbitrary code in one call.
_DANGEROUS_NAMES = ("torch._utils._import_dotted_name", "torch.load", "torch.serialization.load",
                    "torch.hub.load", "torch.jit.load", "torch.package", "numpy.load",
                    "numpy.testing._private.utils.runstring", "operator.attrgetter",
                    "operator.methodcaller")
# Protocol 4 resolves dotted names ("torch" + "os.system" is os.system): any of these as a
# component of a name marks it, wherever it sits.
_DANGEROUS_PARTS = set(["os", "posix", "nt", "subprocess", "sys", "importlib", "builtins",
                        "__builtin__", "shutil", "runpy", "pty", "ctypes", "system", "popen",
                        "eval", "exec", "execfile", "__import__", "getattr"])


_BAD_ZIP = getattr(zipfile, "BadZipFile", None) or zipfile.BadZipfile  # py3 name, py2 name


class CheckpointError(InputError):
    """The file is not something we can read safely; str(err) is one line for the user."""


def is_dangerous(name):
    if name.startswith(_DANGEROUS_NAMES):
        return True
    module, _, attr = name.rpartition(".")
    if _DANGEROUS_PARTS.intersection(name.split(".")[1:]):
        return True
    root = module.split(".")[0]
    if root in ("builtins", "__builtin__"):
        return attr in _DANGEROUS_BUILTINS
    return root in _DANGEROUS_MODULES


class _Unknown(object):
    """A stack value the scanner does not model (the result of a call, a dict, ...)."""


_UNKNOWN = _Unknown()
_MARK = object()


class PickleScan(object):
    """What one pickle references: protocol, globals, persistent ids, tensor rebuilds."""

    def __init__(self):
        self.protocol = 0
        self.globals = []          # "module.name", in first-seen order
        self.persistent_ids = []   # tuples as far as they are made of constants
        self.tensor_rebuilds = 0   # calls of a torch._utils._rebuild_tensor*
        self.rebuild_arg_counts = set()

    def _add_global(self, name):
        if name not in self.globals:
            self.globals.append(name)


def _pop_to_mark(stack):
    items = []
    while stack and stack[-1] is not _MARK:
        items.append(stack.pop())
    if stack:
        stack.pop()
    return tuple(reversed(items))


def _generic(op, stack):
    """Apply an opcode's documented stack effect, pushing values we do not model."""
    before = list(op.stack_before)
    if pickletools.stackslice in before:
        popped = before.index(pickletools.markobject)
        _pop_to_mark(stack)
        before = before[:popped]
    for _ in before:
        if stack:
            stack.pop()
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _UNKNOWN)


def _text(value):
    if isinstance(value, bytes) and not isinstance(value, str):
        return value.decode("latin1")
    return value


_CONSTANT_OPS = ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
                 "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE",
                 "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES",
                 "BINBYTES8")


class _Global(object):
    """A pickled reference to module.attr, as it sits on the stack."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def _step_refs(op, arg, stack, scan):
    """Opcodes that name code (globals), call it, or fetch storages. False if not one."""
    name = op.name
    if name in ("GLOBAL", "INST"):
        module, _, attr = _text(arg).partition(" ")
        scan._add_global(module + "." + attr)
        if name == "INST":  # protocol 0: calls module.attr(*items since MARK)
            _pop_to_mark(stack)
        stack.append(_Global(module + "." + attr) if name == "GLOBAL" else _UNKNOWN)
    elif name in ("EXT1", "EXT2", "EXT4"):
        # copyreg's extension registry maps a code to a global we cannot see from here.
        scan._add_global("<extension code %s>" % (arg,))
        stack.append(_UNKNOWN)
    elif name == "STACK_GLOBAL":
        attr, module = stack.pop() if stack else _UNKNOWN, stack.pop() if stack else _UNKNOWN
        ok = all(isinstance(v, (type(u""), str)) for v in (module, attr))
        full = (module + "." + attr) if ok else "<computed global>"
        stack.append(_Global(full))
        scan._add_global(full)
    elif name in ("BINPERSID", "PERSID"):
        pid = stack.pop() if name == "BINPERSID" and stack else _text(arg)
        scan.persistent_ids.append(pid)
        stack.append(_UNKNOWN)
    elif name in ("REDUCE", "NEWOBJ"):
        args = stack.pop() if stack else _UNKNOWN
        func = stack.pop() if stack else _UNKNOWN
        if isinstance(func, _Global) and func.name.startswith("torch._utils._rebuild_tensor"):
            scan.tensor_rebuilds += 1
            if isinstance(args, tuple):
                scan.rebuild_arg_counts.add(len(args))
        stack.append(_UNKNOWN)
    else:
        return False
    return True


_SMALL_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _step_data(op, arg, stack, memo):
    """Constants, memo, tuples and lists: enough to read persistent ids and key lists."""
    name = op.name
    if name in _CONSTANT_OPS:
        stack.append(_text(arg))
    elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
        stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
    elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
        memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1] if stack else _UNKNOWN
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(arg, _UNKNOWN))
    elif name == "DUP":
        stack.append(stack[-1] if stack else _UNKNOWN)
    elif name in ("TUPLE", "LIST"):
        items = _pop_to_mark(stack)
        stack.append(items if name == "TUPLE" else list(items))
    elif name in _SMALL_TUPLES:
        count = min(_SMALL_TUPLES[name], len(stack))
        items = tuple(stack[len(stack) - count:])
        del stack[len(stack) - count:]
        stack.append(items)
    elif name == "EMPTY_LIST":
        stack.append([])
    elif name in ("APPEND", "APPENDS"):
        items = _pop_to_mark(stack) if name == "APPENDS" else (stack.pop() if stack else _UNKNOWN,)
        if stack and isinstance(stack[-1], list):
            stack[-1].extend(items)
    else:
        _generic(op, stack)


def _step(op, arg, stack, memo, scan):
    """Model the opcodes that carry what we look for; everything else is generic."""
    if op.name == "PROTO":
        scan.protocol = arg
    elif not _step_refs(op, arg, stack, scan):
        _step_data(op, arg, stack, memo)


def scan_pickle(stream):
    """Walk one pickle (up to STOP) in ``stream`` without executing it."""
    scan = PickleScan()
    stack, memo = [], {}
    last = None
    try:
        for op, arg, _pos in pickletools.genops(stream):
            last = op.name
            if op.name == "STOP":
                break
            _step(op, arg, stack, memo, scan)
    except (ValueError, EOFError, struct.error, IndexError, KeyError, UnicodeDecodeError) as err:
        if scan.protocol > pickle.HIGHEST_PROTOCOL:  # Python 2.7 stops at protocol 2
            raise CheckpointError("pickle protocol %d; this Python reads at most %d: re-convert "
                                  "it with pose-train convert --to melodic"
                                  % (scan.protocol, pickle.HIGHEST_PROTOCOL))
        raise CheckpointError("pickle data is truncated or not a pickle (%s)" % (err,))
    if last != "STOP":
        raise CheckpointError("pickle data ends before its STOP opcode (truncated file)")
    scan.value = stack[-1] if stack else _UNKNOWN
    return scan


def _read_header(handle):
    """The first pickle of a legacy file is the magic number; anything else is not one."""
    head = handle.read(2)
    handle.seek(0)
    if len(head) < 2 or head[:1] != b"\x80":
        return False
    try:
        return scan_pickle(handle).value == LEGACY_MAGIC
    except CheckpointError:
        return False


def sniff(path):
    """'zip', 'legacy', 'tar', 'pickle' (a pickle but not a torch file) or 'unknown'."""
    with open(path, "rb") as handle:
        head = handle.read(512)
        handle.seek(0)
        if head[:4] == b"PK\x03\x04":
            return "zip"
        if len(head) >= 262 and head[257:262] == b"ustar":
            return "tar"
        if _read_header(handle):
            return "legacy"
        handle.seek(0)
        if head[:1] == b"\x80":
            return "pickle"
    return "unknown"


def storage_info(pid):
    """(storage class name, key, numel) of a ('storage', cls, key, location, numel, ...) id."""
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        return None, None, None
    kind = pid[1].name if isinstance(pid[1], _Global) else None
    return kind, pid[2], pid[4]


def scan_legacy(path):
    """Scan a legacy file's object pickle and check that every storage's bytes are there."""
    with open(path, "rb") as handle:
        headers = [scan_pickle(handle) for _ in ("magic number", "protocol version", "sys_info")]
        if headers[1].value != LEGACY_PROTOCOL_VERSION:
            raise CheckpointError("legacy protocol version %r is not %d"
                                  % (headers[1].value, LEGACY_PROTOCOL_VERSION))
        scan = scan_pickle(handle)
        key_scan = scan_pickle(handle)
        keys = key_scan.value
        # torch.load unpickles all five pickles: a global in any of them would run.
        for part in headers + [key_scan]:
            for name in part.globals:
                scan._add_global(name)
        sizes = {}
        for pid in scan.persistent_ids:
            kind, key, _numel = storage_info(pid)
            short = (kind or "").rpartition(".")[2]
            sizes[key] = STORAGE_ELEMENT_SIZE.get(short) or _OTHER_ELEMENT_SIZE.get(short)
        if not isinstance(keys, list):
            raise CheckpointError("legacy storage-key list is not a list of names")
        for key in keys:
            raw = handle.read(8)
            if len(raw) < 8:
                raise CheckpointError("storage %s is missing (truncated file)" % (key,))
            numel = struct.unpack("<q", raw)[0]
            if sizes.get(key) is None:
                break  # an element size we do not know: the remaining layout is unknowable
            handle.seek(numel * sizes[key], 1)
            if handle.tell() > _file_size(handle):
                raise CheckpointError("storage %s is cut short (truncated file)" % (key,))
    scan.format = "legacy"
    return scan


def _file_size(handle):
    here = handle.tell()
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(here)
    return size


def scan_zip(path):
    """Scan ``data.pkl`` of a zipfile checkpoint and check its members are all present."""
    try:
        archive = zipfile.ZipFile(path)
    except (_BAD_ZIP, IOError, OSError) as err:
        raise CheckpointError("zip archive is damaged or truncated (%s)" % (err,))
    with archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if not pkl:
            raise CheckpointError("zip archive has no data.pkl: not a torch checkpoint")
        prefix = pkl[0][:-len("data.pkl")]
        scan = scan_pickle(io.BytesIO(archive.read(pkl[0])))
        version = prefix + "version"
        scan.zip_version = (archive.read(version).strip().decode("ascii")
                            if version in names else "?")
        for pid in scan.persistent_ids:
            _kind, key, _numel = storage_info(pid)
            if key is not None and "%sdata/%s" % (prefix, key) not in names:
                raise CheckpointError("storage %s is missing from the zip archive" % (key,))
    scan.format = "zip"
    return scan


def scan_file(path):
    """Sniff and scan ``path``; CheckpointError (one line) when it is not a torch file."""
    kind = sniff(path)
    if kind == "zip":
        return scan_zip(path)
    if kind == "legacy":
        return scan_legacy(path)
    if kind == "tar":
        scan = PickleScan()
        scan.format = "tar"
        return scan
    if kind == "pickle":
        raise CheckpointError("a plain pickle, not a torch checkpoint (no torch magic number)")
    raise CheckpointError("not a torch checkpoint (neither a zip archive nor a legacy "
                          "torch file)")


def check_for_torch14(path):
    """Raise CheckpointError unless torch 1.4 on Python 2.7 can load ``path`` as a state dict.

    Runs before torch.load in the legacy verifier, so a hostile or too-new file is refused
    by reading it, never by executing it.
    """
    kind = sniff(path)
    if kind == "zip":
        raise CheckpointError("a zipfile checkpoint (torch >= 1.6); torch 1.4 cannot read it: "
                              "run 'pose-train convert %s --to melodic' first" % (path,))
    scan = scan_file(path)
    if scan.format != "legacy":
        raise CheckpointError("a %s-format file, not a legacy state dict" % (scan.format,))
    if scan.protocol > 2:
        raise CheckpointError("pickle protocol %d; Python 2.7 reads at most 2: re-convert it "
                              "with pose-train convert --to melodic" % (scan.protocol,))
    bad = [g for g in scan.globals if g not in STATE_DICT_GLOBALS]
    if bad:
        raise CheckpointError("pickle references %s, which a weights-only state dict never "
                              "needs; refusing to load it" % (", ".join(bad),))
    if scan.rebuild_arg_counts - set([4, 6]):
        raise CheckpointError("tensors carry torch >= 1.x metadata (a %s-argument tensor "
                              "rebuild) that torch 1.4 cannot load"
                              % (max(scan.rebuild_arg_counts),))
    return scan
