"""LINEMOD readers: the BOP layout and the older SIXD "hinterstoisser" layout kp6d used.

Both give the same Sequence: the object's mesh, diameter, symmetry, and one Frame per
image with its intrinsics, ground-truth pose (mm) and box. BOP:

    ROOT/models/obj_000001.ply  ROOT/models/models_info.json
    ROOT/{test|train}/000001/rgb/000000.png  mask_visib/000000_000000.png
    ROOT/{test|train}/000001/scene_gt.json  scene_camera.json  scene_gt_info.json

SIXD (the SIXD challenge 2017 release of Hinterstoisser's LINEMOD):

    ROOT/models/obj_01.ply  ROOT/models/models_info.yml
    ROOT/[test/]01/gt.yml  info.yml  rgb/0000.png
"""
import glob
import json
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from pose_train.errors import UserError
from pose_train.keypoints import mesh as meshlib

# LINEMOD objects whose ADD is replaced by ADD-S in the classic protocol (BB8, PVNet, kp6d's
# evaluation): eggbox (10) and glue (11). BOP's models_info marks 3, 7, 10 and 11 symmetric.
SYMMETRIC_IDS = (10, 11)


def symmetry(seq, info, rule="classic"):
    """(symmetric, how it was decided) for object ``seq``: rule "classic" (eggbox and glue),
    "bop" (models_info.json's symmetry fields) or object ids such as "10,11,3"."""
    rule = str(rule).strip().lower()
    if rule == "classic":
        return seq in SYMMETRIC_IDS, "classic LINEMOD rule: ADD-S for eggbox (10) and glue (11)"
    if rule == "bop":
        marked = "symmetries_discrete" in info or "symmetries_continuous" in info
        return marked, "BOP models_info.json symmetry fields"
    try:
        ids = {int(v) for v in rule.replace(" ", "").split(",") if v}
    except ValueError:
        raise UserError("--symmetric takes classic, bop or object ids like 10,11; got %r" % rule)
    return seq in ids, "--symmetric %s" % ",".join(str(i) for i in sorted(ids))


@dataclass
class Frame:
    id: int
    rgb: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray                       # millimetres
    bbox: Optional[List[float]] = None  # x, y, w, h in pixels
    mask_visib: Optional[str] = None


@dataclass
class Sequence:
    layout: str
    root: str
    seq: int
    model_path: str
    model: dict
    diameter: float
    symmetric: bool
    frames: List[Frame] = field(default_factory=list)
    symmetry_rule: str = "classic LINEMOD rule: ADD-S for eggbox (10) and glue (11)"


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise UserError("cannot read %s (%s); check the dataset folder" % (path, err))


def _load_yaml(path):
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path) as f:
            return yaml.load(f, Loader=loader)
    except (OSError, yaml.YAMLError) as err:
        raise UserError("cannot read %s (%s); check the SIXD sequence folder" % (path, err))


def _pose(entry, path):
    try:
        R = np.asarray(entry["cam_R_m2c"], np.float64).reshape(3, 3)
        t = np.asarray(entry["cam_t_m2c"], np.float64).reshape(3)
    except (KeyError, ValueError) as err:
        raise UserError("%s: pose entry lacks cam_R_m2c/cam_t_m2c (%s)" % (path, err))
    return R, t


def _entry_for(entries, seq, path, key):
    for i, e in enumerate(entries):
        if int(e.get("obj_id", seq)) == seq:
            return i, e
    raise UserError("%s: frame %s has no annotation for object %d" % (path, key, seq))


def detect_layout(root, seq):
    """('bop'|'sixd', scene folder, model path) or a UserError that names what is missing."""
    bop_model = os.path.join(root, "models", "obj_%06d.ply" % seq)
    sixd_model = os.path.join(root, "models", "obj_%02d.ply" % seq)
    for split in ("test", "train", "val", ""):
        scene = os.path.join(root, split, "%06d" % seq)
        if os.path.isfile(os.path.join(scene, "scene_gt.json")) and os.path.isfile(bop_model):
            return "bop", scene, bop_model
        scene = os.path.join(root, split, "%02d" % seq)
        if os.path.isfile(os.path.join(scene, "gt.yml")) and os.path.isfile(sixd_model):
            return "sixd", scene, sixd_model
    raise UserError(
        "no LINEMOD sequence %d under %s: expected BOP (models/obj_%06d.ply + test/%06d/scene_gt.json) "
        "or SIXD (models/obj_%02d.ply + %02d/gt.yml); pass --data DATASET_ROOT"
        % (seq, root, seq, seq, seq, seq))


def _model_info(root, seq, layout):
    path = os.path.join(root, "models", "models_info.json" if layout == "bop" else "models_info.yml")
    if not os.path.isfile(path):
        return {}
    info = _load_json(path) if layout == "bop" else _load_yaml(path)
    return info.get(str(seq), info.get(seq, {})) or {}


def _find_image(folder, stems):
    for stem in stems:
        for ext in (".png", ".jpg", ".jpeg"):
            path = os.path.join(folder, stem + ext)
            if os.path.isfile(path):
                return path
    hits = sorted(glob.glob(os.path.join(folder, stems[0] + ".*")))
    if not hits:
        raise UserError("image %s.* missing in %s; the sequence is incomplete" % (stems[0], folder))
    return hits[0]


def _bop_frames(scene, seq):
    gt_path = os.path.join(scene, "scene_gt.json")
    gts = _load_json(gt_path)
    cams = _load_json(os.path.join(scene, "scene_camera.json"))
    info_path = os.path.join(scene, "scene_gt_info.json")
    infos = _load_json(info_path) if os.path.isfile(info_path) else {}
    frames = []
    for key in sorted(gts, key=int):
        gi, entry = _entry_for(gts[key], seq, gt_path, key)
        R, t = _pose(entry, gt_path)
        if key not in cams:
            raise UserError("%s: frame %s missing from scene_camera.json" % (scene, key))
        K = np.asarray(cams[key]["cam_K"], np.float64).reshape(3, 3)
        bbox = None
        if key in infos:
            info = infos[key][gi]
            # The whole object's box, as SIXD's obj_bb is: every keypoint lies inside it.
            bbox = info.get("bbox_obj")
            if bbox is None or bbox[2] <= 0:
                bbox = info.get("bbox_visib")
            bbox = None if bbox is None or bbox[2] <= 0 else [float(v) for v in bbox]
        mask = os.path.join(scene, "mask_visib", "%06d_%06d.png" % (int(key), gi))
        frames.append(Frame(int(key), _find_image(os.path.join(scene, "rgb"), ["%06d" % int(key)]),
                            K, R, t, bbox, mask if os.path.isfile(mask) else None))
    return frames


def _sixd_frames(scene, seq):
    gt_path = os.path.join(scene, "gt.yml")
    gts = _load_yaml(gt_path)
    infos = _load_yaml(os.path.join(scene, "info.yml"))
    frames = []
    for key in sorted(gts, key=int):
        _, entry = _entry_for(gts[key], seq, gt_path, key)
        R, t = _pose(entry, gt_path)
        info = infos.get(key, infos.get(str(key)))
        if info is None:
            raise UserError("%s: frame %s missing from info.yml" % (scene, key))
        K = np.asarray(info["cam_K"], np.float64).reshape(3, 3)
        bbox = [float(v) for v in entry["obj_bb"]] if "obj_bb" in entry else None
        rgb = _find_image(os.path.join(scene, "rgb"), ["%04d" % int(key), "%06d" % int(key)])
        frames.append(Frame(int(key), rgb, K, R, t, bbox, None))
    return frames


def load_sequence(root, seq, symmetric_rule="classic"):
    """Read one LINEMOD object sequence from ROOT in whichever layout it is."""
    layout, scene, model_path = detect_layout(root, seq)
    model = meshlib.read_ply(model_path)
    info = _model_info(root, seq, layout)
    dia = float(info["diameter"]) if "diameter" in info else meshlib.diameter(model["vertices"])
    symmetric, rule = symmetry(seq, info, symmetric_rule)
    frames = _bop_frames(scene, seq) if layout == "bop" else _sixd_frames(scene, seq)
    if not frames:
        raise UserError("%s has no annotated frames" % scene)
    check_units(model_path, dia, frames)
    if layout == "bop" and all(f.mask_visib is None for f in frames) \
            and os.path.isdir(os.path.join(scene, "mask")):
        print("pose-train: warning: %s has mask/ but no mask_visib/: keypoints hidden by other "
              "objects will count as visible (only the object's own surface hides them); "
              "add mask_visib/ (bop_toolkit's calc_gt_masks) for occlusion labels" % scene,
              file=sys.stderr)
    return Sequence(layout, root, seq, model_path, model, dia, symmetric, frames, rule)


# Distance to the camera over object diameter: LINEMOD's objects sit at 3-10 diameters; a
# model in metres with poses in millimetres gives ~5,000, the reverse ~0.005.
PLAUSIBLE_DISTANCE = (0.3, 300.0)


def check_units(model_path, diameter, frames):
    """Refuse a model and poses in different units, with the fix."""
    distance = float(np.median([np.linalg.norm(f.t) for f in frames]))
    ratio = distance / max(diameter, 1e-12)
    if not PLAUSIBLE_DISTANCE[0] <= ratio <= PLAUSIBLE_DISTANCE[1]:
        raise UserError("%s: the object is %.4g across but %.4g away (%.3g diameters): the model "
                        "and the poses use different units (LINEMOD: both mm); rescale the model "
                        "(e.g. metres x 1000)" % (model_path, diameter, distance, ratio))
