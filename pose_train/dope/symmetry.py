"""Canonical corner labels for symmetric objects (`synth dope --mesh ... --symmetry FILE`).

A symmetric object looks the same in poses R and R.S for each of its symmetries S, but DOPE's
corner labels follow R: two identical images would carry different labels, which no network can
learn. So every frame labels the pose among {R.S} that is nearest the camera's axes (largest
trace of the rotation), as DOPE's NViSII generator chooses one per frame for symmetric objects.
Symmetries are read as BOP writes them in models_info.json: ``symmetries_discrete`` (4x4
row-major, translation in model units) and ``symmetries_continuous`` (``axis``, ``offset``).
"""
import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from pose_train.errors import UserError
from pose_train_py27.cuboid import quat_xyzw_to_matrix, rvec_to_quat


@dataclass
class Symmetries:
    discrete: list       # 4x4 arrays in metres, the identity first
    axes: list           # continuous symmetries: (unit axis, a point on it), metres

    def __bool__(self):
        return len(self.discrete) > 1 or bool(self.axes)


NONE = Symmetries([np.eye(4)], [])


def _entry(data, path, object_id):
    if "symmetries_discrete" in data or "symmetries_continuous" in data:
        return data
    if object_id is None:
        if len(data) != 1:
            raise UserError("%s holds %d objects (%s); name one with --symmetry_id"
                            % (path, len(data), ", ".join(sorted(data, key=str)[:8])))
        return next(iter(data.values()))
    key = str(int(str(object_id).replace("obj_", "")))
    if key not in data:
        raise UserError("%s has no object %s; it holds %s" % (path, object_id,
                                                               ", ".join(sorted(data, key=str)[:8])))
    return data[key]


def read(path, object_id=None, scale=1.0):
    """The symmetries of one models_info.json entry (or a file of one entry), in metres."""
    if not path:
        return NONE
    if not os.path.isfile(path):
        raise UserError("--symmetry %s does not exist; pass BOP's models/models_info.json" % path)
    try:
        with open(path) as f:
            entry = _entry(json.load(f), path, object_id)
        discrete = [np.eye(4)]
        for values in entry.get("symmetries_discrete", []):
            S = np.asarray(values, np.float64).reshape(4, 4)
            S[:3, 3] *= scale
            discrete.append(S)
        axes = [(np.asarray(c["axis"], np.float64) / np.linalg.norm(c["axis"]),
                 np.asarray(c.get("offset", [0, 0, 0]), np.float64) * scale)
                for c in entry.get("symmetries_continuous", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError("%s: not BOP's models_info.json layout (%s); each object needs "
                        "symmetries_discrete as 16 numbers or symmetries_continuous with an axis"
                        % (path, exc))
    return Symmetries(discrete, axes)


def _best_about_axis(R, axis):
    """The rotation about ``axis`` (model frame) maximising trace(R . Rot(axis, angle))."""
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.trace(R) - axis @ R @ axis
    b = np.trace(R @ K)
    angle = np.arctan2(b, a)
    return np.eye(3) * np.cos(angle) + np.sin(angle) * K + (1 - np.cos(angle)) * np.outer(axis, axis)


def canonical(quat_xyzw, location, centre, symmetries):
    """(quat, location of the box centre) of the canonical pose among the symmetric ones.
    ``location`` is where the box centre ``centre`` (model frame) sits in the camera frame."""
    if not symmetries:
        return np.asarray(quat_xyzw, np.float64), np.asarray(location, np.float64)
    R = quat_xyzw_to_matrix(quat_xyzw)
    t = np.asarray(location, np.float64) - R @ centre
    best = None
    for D in symmetries.discrete:
        S = D
        for axis, point in symmetries.axes[:1]:   # one continuous axis: a second makes a sphere
            T = np.eye(4)
            T[:3, :3] = _best_about_axis(R @ D[:3, :3], axis)
            T[:3, 3] = point - T[:3, :3] @ point
            S = D @ T
        rotation = R @ S[:3, :3]
        if best is None or np.trace(rotation) > np.trace(best[0]) + 1e-9:
            best = (rotation, R @ (S[:3, :3] @ centre + S[:3, 3]) + t)
    rotation, moved = best
    rvec, _ = cv2.Rodrigues(rotation)
    quat = np.asarray(rvec_to_quat(rvec.ravel()), np.float64)
    return quat * np.sign(quat[3] or 1.0), moved
