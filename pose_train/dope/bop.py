"""BOP datasets read as DOPE data, without conversion.

Layout (bop_toolkit's): ROOT/models/models_info.json (per obj_id: min_x/y/z and size_x/y/z of
the model's bounding box, mm), ROOT/SPLIT/SCENE/scene_gt.json (per image id: obj_id, cam_R_m2c
row-major, cam_t_m2c in mm), scene_camera.json (cam_K row-major), scene_gt_info.json
(visib_fract, optional) and rgb/IMAGE.png|jpg. SPLIT is any folder (train, test, train_pbr...).

Each object's DOPE cuboid is its model's axis-aligned bounding box in the model's own frame,
as DOPE's generators use: the box's centre gives ``location`` (metres, camera frame), the
model's rotation the ``quaternion_xyzw``, and the 8 corners and centre projected with cam_K
the ``projected_cuboid`` in Cuboid3d order. ``--object`` names the object obj_000005 (the
model's file name), or 5.
"""
import glob
import json
import os

import cv2
import numpy as np

from pose_train.errors import UserError
from pose_train_py27.cuboid import cuboid_vertices, rvec_to_quat

IMAGE_FOLDERS = ("rgb", "gray")


def is_bop(root):
    """Whether ``root`` is a BOP dataset; one with scenes but no models_info.json is refused,
    since its cuboids are made from it."""
    if not _scenes(root):
        return False
    if not os.path.isfile(os.path.join(root, "models", "models_info.json")):
        raise UserError("--data %s holds BOP scenes (SPLIT/SCENE/scene_gt.json) but no "
                        "models/models_info.json, which DOPE's cuboids are made from; add the "
                        "dataset's models folder" % root)
    return True


def _scenes(root):
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, "*", "[0-9]*", "scene_gt.json")))


def _load(path, values=dict):
    """A BOP json: an object keyed by ids ("0", "1", ...) whose entries are ``values`` (a dict,
    or a list of dicts); anything else is one line naming the file and the key."""
    if not os.path.isfile(path):
        raise UserError("%s is missing; a BOP scene needs scene_gt.json and scene_camera.json" % path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError("%s: not readable BOP json (%s); fix or replace it" % (path, err))
    if not isinstance(data, dict):
        raise UserError("%s: BOP writes an object keyed by ids here, not a %s; fix or replace it"
                        % (path, type(data).__name__))
    for key, value in data.items():
        if not key.isdigit():
            raise UserError("%s: key %r is not an id (BOP's keys are whole numbers, \"0\", "
                            "\"1\", ...); fix that entry" % (path, key))
        items = value if values is list and isinstance(value, list) else [value]
        if not isinstance(value, values) or not all(isinstance(v, dict) for v in items):
            raise UserError("%s: entry %s is not %s, as BOP writes it; fix that entry"
                            % (path, key, "a list of objects" if values is list else "an object"))
    return data


def object_id(object_name, info, path):
    """obj_000005 or 5 -> 5, checked against models_info.json."""
    text = str(object_name).lower()
    digits = text[4:] if text.startswith("obj_") else text
    if not digits.isdigit() or str(int(digits)) not in info:
        raise UserError("%s has no object %r; BOP objects are named by id, e.g. --object obj_%06d "
                        "(ids here: %s)" % (path, object_name, int(sorted(info, key=int)[0]),
                                           ", ".join(sorted(info, key=int))))
    return int(digits)


def has_object(root, object_name):
    """Whether models_info.json names the object (obj_000005 or 5)."""
    path = os.path.join(root, "models", "models_info.json")
    try:
        object_id(object_name, _load(path), path)
    except UserError:
        return False
    return True


def every_frame(root):
    """[(image path, intrinsics)] of every image of every scene: a set without the object
    trains as negatives beside others, as a NViSII folder without it does."""
    out = []
    for scene in _scenes(root):
        for key, camera in sorted(_load(os.path.join(scene, "scene_camera.json")).items(),
                                  key=lambda kv: int(kv[0])):
            K = _camera_matrix(camera.get("cam_K"), scene, key)
            out.append((_image(scene, key), {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2],
                                             "cy": K[1, 2]}))
    return out


def cuboid_of(entry, oid, path):
    """(box centre in the model frame, box size), both in metres, from a models_info entry."""
    try:
        low = np.array([entry[k] for k in ("min_x", "min_y", "min_z")], np.float64)
        size = np.array([entry[k] for k in ("size_x", "size_y", "size_z")], np.float64)
    except (KeyError, TypeError, ValueError):
        low = size = None
    if low is None or not (np.isfinite(low).all() and np.isfinite(size).all() and (size > 0).all()):
        raise UserError("%s: object %d needs min_x, min_y, min_z and positive size_x, size_y, "
                        "size_z (mm), as bop_toolkit writes them; fix its entry" % (path, oid))
    return (low + size / 2.0) / 1000.0, size / 1000.0


def annotation(R, t_mm, K, centre, size):
    """One object as a NViSII-layout dict: location (m), quaternion_xyzw, projected_cuboid."""
    location = R.dot(centre) + np.asarray(t_mm, np.float64) / 1000.0
    camera = cuboid_vertices(size).dot(R.T) + location
    pixels = camera.dot(K.T)
    return {"location": location.tolist(), "quaternion_xyzw": rvec_to_quat(cv2.Rodrigues(R)[0]).tolist(),
            "cuboid_dimensions": size.tolist(),
            "projected_cuboid": (pixels[:, :2] / pixels[:, 2:3]).tolist()}


def frames(root, object_name):
    """[(image path, intrinsics dict, [object dicts], [problems])] of every image annotating
    the object; an object whose pose or camera is impossible is a problem, not an object."""
    info_path = os.path.join(root, "models", "models_info.json")
    info = _load(info_path)
    oid = object_id(object_name, info, info_path)
    centre, size = cuboid_of(info[str(oid)], oid, info_path)
    out = []
    for scene in _scenes(root):
        gts = _load(os.path.join(scene, "scene_gt.json"), list)
        cams = _load(os.path.join(scene, "scene_camera.json"))
        visib_path = os.path.join(scene, "scene_gt_info.json")
        visib = _load(visib_path, list) if os.path.isfile(visib_path) else {}
        for key in sorted(gts, key=int):
            found = _objects(gts[key], visib.get(key, []), oid, cams.get(key), centre, size, scene, key)
            if found is not None:
                K = np.asarray(cams[key]["cam_K"], np.float64).reshape(3, 3)
                out.append((_image(scene, key), {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2],
                                                 "cy": K[1, 2]}) + found)
    return out


def _objects(entries, infos, oid, camera, centre, size, scene, key):
    """The frame's objects of ``oid`` (None when it shows none), each with its visibility."""
    mine = [(k, e) for k, e in enumerate(entries) if _obj_id(e, scene, key, k) == oid]
    if not mine:
        return None
    if camera is None or "cam_K" not in camera:
        raise UserError("%s/scene_camera.json: no cam_K for image %s; the scene is incomplete" % (scene, key))
    K = _camera_matrix(camera["cam_K"], scene, key)
    objects, problems = [], []
    for k, entry in mine:
        try:
            R = np.asarray(entry["cam_R_m2c"], np.float64).reshape(3, 3)
            t = np.asarray(entry["cam_t_m2c"], np.float64).reshape(3)
        except (KeyError, ValueError, TypeError):
            raise UserError("%s/scene_gt.json: image %s, object %d has no cam_R_m2c (9 numbers) "
                            "and cam_t_m2c (3)" % (scene, key, k))
        problem = _impossible(R, t)
        if problem:
            problems.append("%s/scene_gt.json: image %s, object %d: %s (object skipped)"
                            % (scene, key, k, problem))
            continue
        obj = dict(annotation(R, t, K, centre, size), **{"class": "obj_%06d" % oid})
        if k < len(infos) and "visib_fract" in infos[k]:
            obj["visibility"] = float(infos[k]["visib_fract"])
        objects.append(obj)
    return objects, problems


def _obj_id(entry, scene, key, k):
    value = entry.get("obj_id", -1)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip(
            "-").isdigit():
        raise UserError("%s/scene_gt.json: image %s, object %d: obj_id %r is not a whole number; "
                        "fix that entry" % (scene, key, k, value))
    return int(value)


def _impossible(R, t):
    """Why a BOP pose cannot be an object in view (or None): not a rotation, or not in front."""
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        return "cam_R_m2c or cam_t_m2c is not finite"
    if np.abs(R.dot(R.T) - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
        return "cam_R_m2c is not a rotation (orthonormal, determinant +1)"
    if t[2] <= 0:
        return "cam_t_m2c puts the object at or behind the camera (z <= 0)"
    return None


def _camera_matrix(values, scene, key):
    try:
        K = np.asarray(values, np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        K = None
    if K is None or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise UserError("%s/scene_camera.json: image %s: cam_K is not 9 finite numbers with "
                        "positive fx and fy; fix that entry" % (scene, key))
    return K


def _image(scene, key):
    for folder in IMAGE_FOLDERS:
        for ext in (".png", ".jpg", ".tif"):
            path = os.path.join(scene, folder, "%06d%s" % (int(key), ext))
            if os.path.isfile(path):
                return path
    raise UserError("%s: no image %06d in %s; the scene is incomplete" % (scene, int(key), "/".join(IMAGE_FOLDERS)))


def symmetries(root, object_name):
    """The symmetry fields models_info.json gives the object (symmetries_discrete and/or
    symmetries_continuous, non-empty), [] when none or when ``root`` is not BOP."""
    path = os.path.join(root, "models", "models_info.json")
    if not os.path.isfile(path):
        return []
    info = _load(path)
    entry = info.get(str(object_id(object_name, info, path)), {})
    return [k for k in ("symmetries_discrete", "symmetries_continuous") if entry.get(k)]
