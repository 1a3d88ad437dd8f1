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
    number = str(object_id).replace("obj_", "")
    if not number.isdigit():
        raise UserError("--symmetry_id %s is not an object number; pass the number of its entry "
                        "in %s (e.g. 5 or obj_000005)" % (object_id, path))
    key = str(int(number))
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
        axes = [_axis(c, k, path, scale) for k, c in enumerate(entry.get("symmetries_continuous", []))]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError("%s: not BOP's models_info.json layout (%s); each object needs "
                        "symmetries_discrete as 16 numbers or symmetries_continuous with an axis"
                        % (path, exc))
    return Symmetries(discrete, axes)


def _axis(entry, k, path, scale):
    axis = np.asarray(entry["axis"], np.float64).reshape(3)
    length = float(np.linalg.norm(axis))
    if not np.isfinite(length) or length < 1e-9:
        raise UserError("%s: symmetries_continuous[%d] has the axis %s, which has no direction; "
                        "give a unit vector, e.g. [0, 0, 1]" % (path, k, entry["axis"]))
    return axis / length, np.asarray(entry.get("offset", [0, 0, 0]), np.float64).reshape(3) * scale


def _surface_points(triangles, n, seed):
    """``n`` points spread over the triangles by area (a fixed seed: the check is repeatable)."""
    rng = np.random.default_rng(seed)
    areas = 0.5 * np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0],
                                          triangles[:, 2] - triangles[:, 0]), axis=1)
    chosen = triangles[rng.choice(len(triangles), n, p=areas / areas.sum())]
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return chosen[:, 0] + u[:, None] * (chosen[:, 1] - chosen[:, 0]) + v[:, None] * (
        chosen[:, 2] - chosen[:, 0])


def check(symmetries, triangles, path, points=3000):
    """Each symmetry must be a rotation that maps the object's surface onto itself: a mirror,
    or a translation in other units, labels corners that the frames do not show (measured:
    4.5-17.6 px off). ``triangles``: (T, 3, 3) in metres. Names the entry that fails."""
    from scipy.spatial import cKDTree
    if not symmetries:
        return
    a, b = _surface_points(triangles, points, 1), _surface_points(triangles, points, 2)
    tree = cKDTree(b)
    # What two samples of the same surface differ by, plus a little: the bar a symmetry meets.
    bar = 3.0 * np.percentile(tree.query(a)[0], 90) + 1e-3 * np.ptp(triangles.reshape(-1, 3), 0).max()
    moves = [("symmetries_discrete[%d]" % k, S[:3, :3], S[:3, 3])
             for k, S in enumerate(symmetries.discrete[1:])]
    for k, (axis, point) in enumerate(symmetries.axes):
        for angle in (1.0, 2.5):   # radians: a sample of the turns about the axis
            R = cv2.Rodrigues(axis * angle)[0]
            moves.append(("symmetries_continuous[%d]" % k, R, point - R @ point))
    for name, R, t in moves:
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
            raise UserError("%s: %s is not a rotation (%s); a symmetry is a proper rotation "
                            "(orthonormal, determinant +1)" % (path, name, "a mirror" if
                                                               np.linalg.det(R) < 0 else
                                                               "not orthonormal"))
        moved = np.percentile(tree.query(a @ R.T + t)[0], 90)
        if moved > bar:
            raise UserError("%s: %s does not map the mesh onto itself (its surface moves %.1f mm); "
                            "check its translation (model units: --scale) and the --symmetry_id"
                            % (path, name, 1000 * moved))


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
