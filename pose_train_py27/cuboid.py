# -*- coding: utf-8 -*-
"""The cuboid and rotation helpers both runtimes use (training data, inference, evaluation).

Object frame = OpenCV axes (x right, y down, z forward); the front face is the one at +z.
Vertex order is DOPE's Cuboid3d order, centroid last:
  0 FrontTopRight  1 FrontTopLeft  2 FrontBottomLeft  3 FrontBottomRight
  4 RearTopRight   5 RearTopLeft   6 RearBottomLeft   7 RearBottomRight   8 Center
"""
from __future__ import absolute_import, division

import numpy as np

# The 12 edges, for drawing.
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
         (0, 4), (1, 5), (2, 6), (3, 7)]


def cuboid_vertices(size):
    """9x3 vertices (8 corners + centre) of a cuboid of size (width x, height y, depth z)."""
    w, h, d = (float(s) / 2.0 for s in size)
    right, left, top, bottom, front, rear = w, -w, -h, h, d, -d
    return np.array([
        [right, top, front], [left, top, front], [left, bottom, front], [right, bottom, front],
        [right, top, rear], [left, top, rear], [left, bottom, rear], [right, bottom, rear],
        [0.0, 0.0, 0.0]], dtype=np.float64)


def quat_xyzw_to_matrix(q):
    x, y, z, w = (float(v) for v in q)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def axis_angle_quat(axis, angle):
    """Unit quaternion (x, y, z, w) of a rotation by ``angle`` about ``axis``."""
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis)
    if norm == 0.0:
        return np.array([0.0, 0.0, 0.0, 1.0])
    s = np.sin(angle / 2.0) / norm
    return np.array([axis[0] * s, axis[1] * s, axis[2] * s, np.cos(angle / 2.0)])


def rvec_to_quat(rvec):
    """OpenCV's Rodrigues vector -> quaternion (x, y, z, w), w >= 0 (the angle is in [0, pi])."""
    rvec = np.asarray(rvec, dtype=np.float64).reshape(3)
    return axis_angle_quat(rvec, np.linalg.norm(rvec))


def quat_multiply(a, b):
    """Hamilton product a * b of (x, y, z, w) quaternions: rotate by b, then by a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def rotation_angle_deg(q1, q2):
    """The angle of the rotation between two orientations, in degrees."""
    r = quat_xyzw_to_matrix(q1).T.dot(quat_xyzw_to_matrix(q2))
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))
