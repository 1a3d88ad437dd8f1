# -*- coding: utf-8 -*-
"""The DOPE networks one ``infer dope`` or ``eval dope`` run uses, one per object, as the node
runs them: each loaded strictly, with its own sidecar's object name, cuboid, normalisation and
decode settings. The flags that apply to all of them (thresholds, sigma) override every one.
"""
from __future__ import absolute_import, division, print_function

import os
import sys

from pose_train_py27 import overlay, sidecar
from pose_train_py27.dope_io import InputError, dimensions_from_settings, parse_dimensions
from pose_train_py27.keys import add_prefix
from pose_train_py27.verify import VerifyError, infer_model, load_as_consumer, load_weights_file

NODE_DOWNSCALE_HEIGHT = 500   # the node's shipped config
# The settings DOPE's node applies to every network it runs (one config for all objects).
NODE_WIDE = ("thresh_angle", "thresh_map", "sigma", "thresh_points", "downscale_height")


def load_network(weights, device):
    """DopeNetwork loaded strictly as the node loads it (DataParallel, ``module.`` keys)."""
    try:
        state = load_weights_file(weights)
    except VerifyError as err:
        raise InputError("%s; pass DOPE weights (net_epoch_XX.pth)" % err)
    name = infer_model(state)[0] if isinstance(state, dict) else None
    if name != "dope":
        what = "FastPose (keypoint) weights" if name else "not a network's state dict"
        raise InputError("%s: %s, not DOPE's; pass DOPE weights (net_epoch_XX.pth)"
                         % (weights, what))
    try:
        net = load_as_consumer("dope", add_prefix(state))
    except (KeyError, RuntimeError) as err:
        raise InputError("%s: does not load into DOPE's network (%s); pass weights of the "
                         "standard 6-stage, 9-belief DopeNetwork" % (weights, str(err).strip()
                                                                     .splitlines()[0]))
    return net.to(device)


def settings_for(args, meta):
    settings = sidecar.decode_of(meta)
    for key in ("sigma", "thresh_map", "thresh_points", "thresh_angle", "downscale_height"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    settings.setdefault("downscale_height", NODE_DOWNSCALE_HEIGHT)
    settings["partial"] = bool(getattr(args, "partial", False))
    settings["unrectified"] = bool(getattr(args, "unrectified", False))
    return settings


def dimensions_for(args, meta, object_name, weights=None):
    """The cuboid (cm): --dimensions (x,y,z, or an NDDS _object_settings.json looked up by
    the object's name), else the sidecar's."""
    given = getattr(args, "dimensions", None)
    if given and os.path.isfile(given):
        return dimensions_from_settings(given, object_name)
    if given:
        return parse_dimensions(given)
    if meta.get("dimensions_cm"):
        return [float(v) for v in meta["dimensions_cm"]]
    raise InputError("%s: no cuboid dimensions (its json sidecar records none); pass "
                     "--dimensions X,Y,Z in cm, as DOPE's node takes them"
                     % (weights or args.weights))


def as_list(weights):
    if weights is None:
        return []
    return list(weights) if isinstance(weights, (list, tuple)) else [weights]


def _names_given(args, count):
    """--object for each of ``count`` networks: one name, or NAME1,NAME2,... in weights order."""
    given = getattr(args, "object", None)
    if not given:
        return [None] * count
    names = [n.strip() for n in given.split(",")] if count > 1 else [given]
    if not all(names):
        raise InputError("--object %s: an empty name; give each of the %d network(s) a name, "
                         "comma-separated in the order of the weights" % (given, count))
    if len(names) != count:
        raise InputError("--object %s: %d name(s) for %d network(s); give one per network, "
                         "comma-separated in the order of the weights (or leave it out: each "
                         "sidecar names its object)" % (given, len(names), count))
    return names


def _refuse_a_file_twice(paths):
    """The same weights twice would run one network as two objects."""
    seen = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise InputError("%s is given twice (as %s and %s); pass each object's network once"
                             % (real, seen[real], path))
        seen[real] = path


def _check_dimensions_flag(args, count):
    given = getattr(args, "dimensions", None)
    if count > 1 and given and not os.path.isfile(given):
        raise InputError("--dimensions %s: one cuboid for %d networks; leave it out (each "
                         "sidecar records its object's), or pass an NDDS _object_settings.json "
                         "naming every object" % (given, count))


def load_all(args, device, load=True):
    """Every network of ``args.weights`` as a dict: weights, net (None unless ``load``), meta,
    object, dimensions_cm, normalization, settings, color. Each file is checked to be DOPE
    weights before anything else is asked of it; two networks for one object are refused."""
    paths = as_list(args.weights)
    if not paths:
        raise InputError("give WEIGHTS: one DOPE net_epoch_XX.pth per object")
    _refuse_a_file_twice(paths)
    names = _names_given(args, len(paths))
    _check_dimensions_flag(args, len(paths))
    nets = [load_network(w, device) if load else None for w in paths]
    out, seen = [], {}
    for k, (weights, net, name) in enumerate(zip(paths, nets, names)):
        meta = sidecar.read(weights)
        name = name or meta.get("object") or ("object" if len(paths) == 1 else "object%d" % (k + 1))
        if name.lower() in seen:
            raise InputError("%s and %s are both for '%s': one network per object; %s" % (
                seen[name.lower()], weights, name, "--object names it twice" if names[k] else
                "pass --object NAME1,NAME2,... to tell them apart"))
        seen[name.lower()] = weights
        out.append({"weights": weights, "net": net, "meta": meta, "object": name,
                    "dimensions_cm": dimensions_for(args, meta, name, weights),
                    "normalization": sidecar.normalization_of(meta, getattr(args, "normalize", None),
                                                              sidecar.path_of(weights)),
                    "settings": settings_for(args, meta), "color": overlay.color_of(k)})
    for n, given in zip(out, names):   # said, not refused: datasets name objects their own way
        trained = str(n["meta"].get("object") or "")
        if given and trained and given.lower() != trained.lower():
            print("pose-train: warning: %s trained on '%s'; --object names it '%s' here"
                  % (n["weights"], trained, given), file=sys.stderr)
    return out


def node_wide_differences(networks):
    """One line per network whose NODE_WIDE settings differ from the first's, or []."""
    first, lines = networks[0], []
    for n in networks[1:]:
        differ = [k for k in NODE_WIDE if n["settings"][k] != first["settings"][k]]
        if differ:   # the first named first: "the first's" in the callers' lines is it
            lines.append("%s (the first) decodes with %s, %s with %s" % (
                first["object"], " and ".join("%s %s" % (k, first["settings"][k]) for k in differ),
                n["object"], " and ".join("%s %s" % (k, n["settings"][k]) for k in differ)))
    return lines


def described(network):
    """What detections.json records of a network (everything but the loaded module)."""
    return {"weights": os.path.abspath(network["weights"]), "object": network["object"],
            "dimensions_cm": network["dimensions_cm"],
            "normalization": network["normalization"]["name"], "settings": network["settings"],
            "color": list(network["color"])}
