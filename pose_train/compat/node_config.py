"""DOPE's ROS 1 node config (``config_pose.yaml``): one object's entries beside a converted
network (``convert --to melodic``), or the whole file for several (``node-config``).

Units and names are the node's: ``dimensions`` in centimetres (the node divides its PnP
location by 100), one ``class_ids`` / ``draw_colors`` entry per object (a missing one is a
KeyError in the node), ``weights`` resolved by resource_retriever from the dope package. The
node applies one set of thresholds, ``sigma`` and ``downscale_height`` to every network.
"""
import os
import re
import shlex
import sys
import zipfile

import yaml

from pose_train.compat import isaac_ros
from pose_train.errors import UserError
from pose_train.files import atomic_write, host_path, make_folder
from pose_train_py27 import dope_networks, overlay, sidecar
from pose_train_py27.dope_io import parse_dimensions

IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
# The node's own keys, shared by every object (its shipped config's values where one applies).
SHARED = ("topic_camera", "topic_camera_info", "topic_publishing", "input_is_rectified",
          "downscale_height", "overlay_belief_images", "thresh_angle", "thresh_map", "sigma",
          "thresh_points")
PER_OBJECT = ("weights", "dimensions", "class_ids", "draw_colors", "model_transforms")


def object_entries(name, weights_file, dimensions_cm, index):
    """The node's per-object maps for the ``index``-th object (class id index + 1)."""
    return {"weights": {name: "package://dope/weights/" + weights_file},
            "dimensions": {name: [float(v) for v in dimensions_cm]},
            "class_ids": {name: index + 1}, "draw_colors": {name: list(overlay.color_of(index))},
            "model_transforms": {name: [list(row) for row in IDENTITY]}}


def node_config(meta, weights_file, dimensions_cm):
    config = object_entries(meta["object"], weights_file, dimensions_cm, 0)
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


def whole_config(args, networks):
    """config_pose.yaml for ``networks`` (dope_networks.load_all), in the order given."""
    config = {"topic_camera": args.topic_camera, "topic_camera_info": args.topic_camera_info,
              "topic_publishing": args.topic_publishing,
              "input_is_rectified": not args.unrectified,
              "overlay_belief_images": True}
    config.update({key: {} for key in PER_OBJECT})
    for k, (n, name) in enumerate(zip(networks, file_names(networks))):
        for key, entry in object_entries(n["object"], name, n["dimensions_cm"], k).items():
            config[key].update(entry)
    first = networks[0]["settings"]
    config.update({key: first[key] for key in dope_networks.NODE_WIDE})
    return config


def file_names(networks):
    """Each network's file name in dope/weights: its own, or OBJECT_NAME when two share one
    (every training run writes net_best.pth)."""
    names = [os.path.basename(n["weights"]) for n in networks]
    if len(set(names)) == len(names):
        return names
    return ["%s_%s" % (n["object"], name) for n, name in zip(networks, names)]


def _warnings(networks):
    """What the node would do differently from each network's own settings, said per object."""
    lines = ["%s; the node applies the first's to every object: train both at one crop and "
             "frame size, or run a node per object" % line
             for line in dope_networks.node_wide_differences(networks)]
    for n in networks:
        norm = n["normalization"]
        if [round(v, 6) for v in norm["mean"] + norm["std"]] != [0.5] * 6:
            lines.append("%s was trained on %s normalisation, but the node feeds (x - 0.5) / 0.5; "
                         "pass its `pose-train convert %s --to melodic` output, which folds it in"
                         % (n["weights"], norm["name"], n["weights"]))
        if zipfile.is_zipfile(n["weights"]):
            lines.append("%s is in torch's zip format, which Melodic's torch 1.4 cannot load; "
                         "pass its `pose-train convert --to melodic` output" % n["weights"])
    return lines


def _refuse_dropping_objects(args, networks):
    """A config_pose.yaml holds every object of one node: written for other weights, it would
    lose the objects already there (dope_config.yaml keeps them by merging)."""
    if args.force or not os.path.isfile(args.out):
        return
    try:
        with open(args.out) as f:
            before = (yaml.safe_load(f) or {}).get("weights") or {}
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise UserError("%s: not a node config this can update (%s); pass another --out, or "
                        "--force to replace it" % (args.out, str(err).splitlines()[0]))
    dropped = sorted(set(before) - set(n["object"] for n in networks))
    if dropped:
        raise UserError("%s configures %s, which these weights do not: pass every object's "
                        "weights in one node-config (the node runs them together), or --force "
                        "to replace it" % (args.out, ", ".join(dropped)))


def main(args):
    if str(args.out).endswith(("/", os.sep)):   # a folder to make: the config goes in it
        args.out = os.path.join(args.out, "config_pose.yaml")
    if not os.path.isdir(args.out) and os.path.splitext(args.out)[1].lower() not in (".yaml", ".yml"):
        raise UserError("--out %s: the node's config is a YAML file; pass a name ending in .yaml, "
                        "e.g. config_pose.yaml" % args.out)
    if os.path.isdir(args.out):
        args.out = os.path.join(args.out, "config_pose.yaml")
    networks = dope_networks.load_all(args, "cpu")
    for n in networks:   # the node publishes dope/pose_NAME: a ROS name, and a file name here
        if not re.match(r"^[A-Za-z0-9_]+$", n["object"]):
            raise UserError("object name %r (%s): ROS names take letters, digits and _ only (the "
                            "node publishes on %s/pose_NAME); pass --object NAME1,NAME2,..."
                            % (n["object"], n["weights"], args.topic_publishing))
    _refuse_dropping_objects(args, networks)
    folder = make_folder(os.path.dirname(os.path.abspath(args.out)), "--out", args.out)
    existing = isaac_ros.read_dope_config(folder)   # refused before anything is written
    config = whole_config(args, networks)
    names = ", ".join(n["object"] for n in networks)
    copies = ["cp %s dope/weights/%s" % (shlex.quote(host_path(n["weights"])), name)
              for n, name in zip(networks, file_names(networks))]
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    atomic_write(args.out, lambda f: f.write(
        "# DOPE ROS 1 node config for %s, written by pose-train node-config. The weights go in\n"
        "# the dope package's weights/ folder:\n%s\n" % (names, "\n".join(
            "#   " + line for line in copies)) + text), binary=False)
    isaac = isaac_ros.write_dope_config(folder, {n["object"]: n["dimensions_cm"] for n in networks},
                                        existing, writer="node-config")[0]
    for line in _warnings(networks):
        print("pose-train: warning: %s" % line, file=sys.stderr)
    print("wrote %s (%d object(s): %s) and %s (Isaac ROS: their dimensions, merged with any "
          "objects already there); "
          "put the weights where the node finds them:\n  %s" % (args.out, len(networks), names,
                                                              isaac, "\n  ".join(copies)))
    return 0
