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
import collections
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
    "bop" (models_info.json's symmetry fields) or object ids such as "10,11,3". ``info``: the
    object's models_info entry, None when the dataset has no models_info file."""
    rule = str(rule).strip().lower()
    if rule == "classic":
        return seq in SYMMETRIC_IDS, "classic LINEMOD rule: ADD-S for eggbox (10) and glue (11)"
    if rule == "bop":
        if info is None:
            raise UserError("--symmetric bop reads the symmetry fields of models/models_info.json, "
                            "and this dataset has none; add BOP's models_info.json, or pass "
                            "--symmetric classic or the symmetric ids (e.g. 10,11)")
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


def _pose(entry, path, frame):
    try:
        R = np.asarray(entry["cam_R_m2c"], np.float64).reshape(3, 3)
        t = np.asarray(entry["cam_t_m2c"], np.float64).reshape(3)
    except (KeyError, ValueError, TypeError) as err:
        raise UserError("%s: pose entry lacks cam_R_m2c/cam_t_m2c (%s)" % (path, err))
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        # Checked here: the units check below would read the NaN as a scale problem.
        raise UserError("%s: frame %s: the pose holds NaN or inf (cam_R_m2c/cam_t_m2c); fix or "
                        "remove that entry" % (path, frame))
    return R, t


def _entry_for(entries, seq, path, key):
    for i, e in enumerate(entries):
        if int(e.get("obj_id", seq)) == seq:
            return i, e
    raise UserError("%s: frame %s has no annotation for object %d" % (path, key, seq))


BOP_SPLITS = ("test", "train", "val", "train_pbr", "")


def _annotates(gt_path, seq):
    return any(int(e.get("obj_id", -1)) == seq for entries in _load_json(gt_path).values()
               for e in entries)


def bop_scenes(root, seq):
    """Every scene of the first BOP split folder (test, train, val, train_pbr) that annotates
    object ``seq``: LINEMOD's own scene, LM-O's scene 2, or the many scenes of train_pbr."""
    for split in BOP_SPLITS:
        own = os.path.join(root, split, "%06d" % seq)
        gts = sorted(glob.glob(os.path.join(root, split, "[0-9]" * 6, "scene_gt.json")))
        hits = [os.path.dirname(p) for p in gts if _annotates(p, seq)]
        if hits:
            return sorted(hits, key=lambda scene: scene != own)   # its own scene first
    return []


def detect_layout(root, seq):
    """('bop', [scene folders], model) | ('sixd', [scene folder], model), else a UserError
    that names what is missing."""
    bop_model = os.path.join(root, "models", "obj_%06d.ply" % seq)
    sixd_model = os.path.join(root, "models", "obj_%02d.ply" % seq)
    if os.path.isfile(bop_model):
        scenes = bop_scenes(root, seq)
        if scenes:
            return "bop", scenes, bop_model
    for split in ("test", "train", "val", ""):
        scene = os.path.join(root, split, "%02d" % seq)
        if os.path.isfile(os.path.join(scene, "gt.yml")) and os.path.isfile(sixd_model):
            return "sixd", [scene], sixd_model
    raise UserError(
        "no LINEMOD object %d under %s: expected BOP (models/obj_%06d.ply + a scene whose "
        "scene_gt.json annotates obj_id %d, e.g. test/%06d/) or SIXD (models/obj_%02d.ply + "
        "%02d/gt.yml); pass --data DATASET_ROOT" % (seq, root, seq, seq, seq, seq, seq))


def _model_info(root, seq, layout):
    path = os.path.join(root, "models", "models_info.json" if layout == "bop" else "models_info.yml")
    if not os.path.isfile(path):
        return None
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


def _bop_entries(scene, seq, min_visib):
    """(image key, gt index, entry, info) of every annotation of ``seq`` in one scene."""
    gt_path = os.path.join(scene, "scene_gt.json")
    gts = _load_json(gt_path)
    info_path = os.path.join(scene, "scene_gt_info.json")
    infos = _load_json(info_path) if os.path.isfile(info_path) else {}
    for key in sorted(gts, key=int):
        for gi, entry in enumerate(gts[key]):
            if int(entry.get("obj_id", seq)) != seq:
                continue
            info = infos.get(key, [])[gi] if gi < len(infos.get(key, [])) else {}
            if min_visib and info.get("visib_fract", 1.0) < min_visib:
                continue
            yield key, gi, entry, info


def _bop_frames(scenes, seq, min_visib=0.0):
    """One Frame per annotation of the object. Ids are the image ids while one scene holds
    the object once per frame (split files speak of those); otherwise scene * 1e6 + image *
    10 + instance, so a second instance or another scene never collides."""
    found = [(scene,) + e for scene in scenes for e in _bop_entries(scene, seq, min_visib)]
    per_image = collections.Counter((scene, key) for scene, key, _, _, _ in found)
    plain = len(scenes) == 1 and max(per_image.values() or [1]) == 1
    seen, frames = collections.Counter(), []
    for scene, key, gi, entry, info in found:
        R, t = _pose(entry, os.path.join(scene, "scene_gt.json"), key)
        cams = _scene_cameras(scene)
        if key not in cams:
            raise UserError("%s: frame %s missing from scene_camera.json" % (scene, key))
        K = np.asarray(cams[key]["cam_K"], np.float64).reshape(3, 3)
        # The whole object's box, as SIXD's obj_bb is: every keypoint lies inside it.
        bbox = info.get("bbox_obj")
        if bbox is None or bbox[2] <= 0:
            bbox = info.get("bbox_visib")
        bbox = None if bbox is None or bbox[2] <= 0 else [float(v) for v in bbox]
        mask = os.path.join(scene, "mask_visib", "%06d_%06d.png" % (int(key), gi))
        instance = seen[(scene, key)]
        seen[(scene, key)] += 1
        fid = int(key) if plain else int(os.path.basename(scene)) * 1000000 + int(key) * 10 + instance
        frames.append(Frame(fid, _find_image(os.path.join(scene, "rgb"), ["%06d" % int(key)]),
                            K, R, t, bbox, mask if os.path.isfile(mask) else None))
    return frames


_CAMERAS = {}


def _scene_cameras(scene):
    if scene not in _CAMERAS:
        _CAMERAS[scene] = _load_json(os.path.join(scene, "scene_camera.json"))
    return _CAMERAS[scene]


def _sixd_frames(scene, seq):
    gt_path = os.path.join(scene, "gt.yml")
    gts = _load_yaml(gt_path)
    infos = _load_yaml(os.path.join(scene, "info.yml"))
    frames = []
    for key in sorted(gts, key=int):
        _, entry = _entry_for(gts[key], seq, gt_path, key)
        R, t = _pose(entry, gt_path, key)
        info = infos.get(key, infos.get(str(key)))
        if info is None:
            raise UserError("%s: frame %s missing from info.yml" % (scene, key))
        K = np.asarray(info["cam_K"], np.float64).reshape(3, 3)
        bbox = [float(v) for v in entry["obj_bb"]] if "obj_bb" in entry else None
        rgb = _find_image(os.path.join(scene, "rgb"), ["%04d" % int(key), "%06d" % int(key)])
        frames.append(Frame(int(key), rgb, K, R, t, bbox, None))
    return frames


def load_sequence(root, seq, symmetric_rule="classic", min_visib=0.0):
    """Read one LINEMOD object from ROOT in whichever layout it is: every frame of every scene
    that shows it (one Frame per instance), those less visible than ``min_visib`` left out."""
    layout, scenes, model_path = detect_layout(root, seq)
    scene = scenes[0]
    model = meshlib.read_ply(model_path)
    info = _model_info(root, seq, layout)
    dia = float(info["diameter"]) if "diameter" in (info or {}) else meshlib.diameter(model["vertices"])
    symmetric, rule = symmetry(seq, info, symmetric_rule)
    frames = _bop_frames(scenes, seq, min_visib) if layout == "bop" else _sixd_frames(scene, seq)
    if not frames:
        raise UserError("%s has no annotated frames of object %d%s" % (
            ", ".join(scenes), seq, " visible >= %g" % min_visib if min_visib else ""))
    check_units(model_path, dia, frames)
    if layout == "bop" and all(f.mask_visib is None for f in frames) \
            and any(os.path.isdir(os.path.join(sc, "mask")) for sc in scenes):
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
