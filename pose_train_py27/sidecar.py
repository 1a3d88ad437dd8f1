# -*- coding: utf-8 -*-
"""The json sidecar beside a weights file (net_epoch_10.pth -> net_epoch_10.json): its one
schema, for every reader and writer in both runtimes.

The weights file can hold nothing but the state dict DOPE's ROS node loads, so the facts a
consumer needs travel here: the object, its cuboid in cm, the crop size trained at, the input
normalisation, and the decode settings that scale the node's post-processing to that crop.

Version 2 stores ``normalization`` as a dict (name, mean, std, and the fold facts convert adds).
Version 1 files, and files other tools wrote, may hold the bare name ("ros"); ``read``
upgrades them, so callers only ever see the dict.
"""
from __future__ import absolute_import

import json
import os

from pose_train_py27.atomic import write_atomic
from pose_train_py27.dope_decode import decode_settings
from pose_train_py27.dope_io import NORMALIZATIONS, InputError

VERSION = 2
DEFAULT_NORMALIZATION = "ros"


def path_of(weights):
    """The sidecar's path for a weights file (any extension: .pth, .pkl, .onnx)."""
    return os.path.splitext(weights)[0] + ".json"


def exists(weights):
    return os.path.isfile(path_of(weights))


def read(weights):
    """The upgraded sidecar of ``weights`` as a dict, or {} when there is none."""
    path = path_of(weights)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
    except ValueError as err:
        raise InputError("%s is not valid JSON (%s); fix or delete it" % (path, err))
    except (IOError, OSError) as err:
        raise InputError("%s: cannot read it (%s)" % (path, err))
    if not isinstance(meta, dict):
        raise InputError("%s: a sidecar is a JSON object, this is a %s; fix or delete it"
                         % (path, type(meta).__name__))
    return upgrade(meta, path)


def upgrade(meta, path="sidecar"):
    """``meta`` in the current schema (a copy); old spellings are read, not rejected."""
    meta = dict(meta)
    if "normalisation" in meta and "normalization" not in meta:
        meta["normalization"] = meta.pop("normalisation")
    norm = meta.get("normalization")
    if isinstance(norm, dict) or norm in NORMALIZATIONS:
        meta["normalization"] = normalization_of(meta, source=path)
    # An unknown name stays as written: a --normalize flag may still override it, and
    # normalization_of refuses it when nothing does.
    _check(meta, path)
    meta["sidecar_version"] = VERSION
    return meta


def _numbers(value, count=None):
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if count is None or len(values) == count else None


def _check(meta, path):
    """The values consumers compute with: wrong ones stop here, naming the file."""
    dims = meta.get("dimensions_cm")
    if dims is not None and not (_numbers(dims, 3) and all(d > 0 for d in _numbers(dims, 3))):
        raise InputError("%s: dimensions_cm must be the cuboid's 3 sizes in cm (e.g. [10, 8, 6]), "
                         "got %r; fix the file" % (path, dims))
    for key in ("imagesize", "stride"):
        if meta.get(key) is not None and not (_numbers([meta[key]]) and float(meta[key]) > 0):
            raise InputError("%s: %s must be a positive number, got %r; fix the file"
                             % (path, key, meta[key]))
    decode = meta.get("decode")
    if decode is None:
        return
    if not isinstance(decode, dict):
        raise InputError("%s: decode must be an object of settings; fix or remove it" % path)
    for key, value in decode.items():
        number = _numbers([value])
        if number is None or number[0] < 0:
            raise InputError("%s: decode.%s must be a number >= 0, got %r; fix the file or "
                             "remove decode (it is derived from imagesize)" % (path, key, value))


def write(weights, meta):
    """Write ``meta`` as the sidecar of ``weights`` atomically; returns its path."""
    path = path_of(weights)
    text = json.dumps(upgrade(meta, path), indent=1, sort_keys=True)
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))
    return path


def normalization_of(meta, override=None, source="sidecar"):
    """The input normalisation as a dict {name, mean, std, ...}.

    ``override`` (a flag's value) wins; then the sidecar's, as a name or a dict; then the ROS
    node's 0.5 / 0.5, which is what the node has always fed weights that say nothing.
    """
    value = override or (meta or {}).get("normalization") or DEFAULT_NORMALIZATION
    if isinstance(value, dict):
        if value.get("mean") is not None and value.get("std") is not None:
            mean, std = _numbers(value["mean"], 3), _numbers(value["std"], 3)
            if not mean or not std or not all(v > 0 for v in std):
                raise InputError("%s: normalization needs 3 mean and 3 positive std values; "
                                 "fix the file" % source)
            return dict(value, name=value.get("name") or "custom")
        value = value.get("name") or DEFAULT_NORMALIZATION
    name = str(value)
    if name not in NORMALIZATIONS:
        raise InputError("%s: unknown normalization %r; set it to one of %s in the file (infer, "
                         "eval and train also take --normalize)"
                         % (source, name, ", ".join(sorted(NORMALIZATIONS))))
    return dict(NORMALIZATIONS[name])


def decode_of(meta):
    """The node's post-processing settings, scaled to the crop these weights trained at."""
    return decode_settings(meta or {})


def dope_meta(object_name, imagesize, normalization, sigma_output_px, dimensions_cm,
              frame_size, config=None):
    """What ``train dope`` records beside each weights file (tests build theirs with it too)."""
    meta = {"object": str(object_name).lower(), "imagesize": int(imagesize),
            "sigma_output_px": sigma_output_px, "stride": 8, "num_belief": 9,
            "num_affinity": 16, "normalization": normalization_of({}, normalization),
            "config": dict(config or {}),
            "dimensions_cm": None if dimensions_cm is None else [float(v) for v in dimensions_cm],
            "frame_size": [int(v) for v in frame_size], "sidecar_version": VERSION}
    meta["decode"] = decode_settings(meta)
    return meta
