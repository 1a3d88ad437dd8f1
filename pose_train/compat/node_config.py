"""The entries DOPE's ROS node reads from ``config_pose.yaml`` for one converted network.

Written beside the melodic weights as ``NAME_melodic.yaml``; merge its maps into the node's
config. Units and names are the node's: ``dimensions`` in centimetres (the node divides its
PnP location by 100), one ``class_ids`` / ``draw_colors`` entry per object (a missing one is a
KeyError in the node), ``weights`` resolved by resource_retriever from the dope package.
"""
import os

import yaml

from pose_train.files import atomic_write
from pose_train_py27 import sidecar
from pose_train_py27.dope_io import parse_dimensions

IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
DRAW_COLOR = [13, 255, 128]


def node_config(meta, weights_file, dimensions_cm):
    name = meta["object"]
    config = {"weights": {name: "package://dope/weights/" + weights_file},
              "dimensions": {name: [float(v) for v in dimensions_cm]},
              "class_ids": {name: 1}, "draw_colors": {name: list(DRAW_COLOR)},
              "model_transforms": {name: IDENTITY}}
    # The node's thresholds, with the smoothing and frame scale of the trained crop size.
    config.update(sidecar.decode_of(meta))
    return config


def write_node_config(out, meta, dimensions=None, say=print):
    """``OUT`` minus .pth plus .yaml, when the object and its dimensions are known; its path."""
    if not meta or "object" not in meta:
        say("no node config written for %s: its source has no json sidecar naming the object "
            "(pose-train's trainer writes one beside each net_epoch_XX.pth)" % out)
        return None
    dims = parse_dimensions(dimensions) if dimensions else meta.get("dimensions_cm")
    if not dims:
        say("no node config written: the training data gave no cuboid dimensions; pass "
            "--dimensions X,Y,Z (cm) to write %s" % (os.path.splitext(out)[0] + ".yaml"))
        return None
    path = os.path.splitext(out)[0] + ".yaml"
    text = yaml.safe_dump(node_config(meta, os.path.basename(out), dims), sort_keys=False)
    atomic_write(path, lambda f: f.write(text), binary=False)
    say("wrote %s (merge into the node's config_pose.yaml; put %s in dope/weights)"
        % (path, os.path.basename(out)))
    return path
