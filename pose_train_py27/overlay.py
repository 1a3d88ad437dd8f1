# -*- coding: utf-8 -*-
"""Drawing cuboids, axes and belief maps on images (training grids and inference overlays)."""
from __future__ import absolute_import, division

import math

import cv2
import numpy as np

from pose_train_py27.cuboid import EDGES

# One colour per cuboid face direction (RGB), so a flipped cuboid is visible at a glance.
FRONT, REAR, SIDE, CENTRE = (255, 60, 60), (60, 120, 255), (60, 230, 60), (255, 255, 0)
AXIS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))   # x red, y green, z blue
# One colour per object (RGB): its label in overlays, and its draw_colors entry in the node's
# config, so an object looks the same in both. Far apart in hue; the first is convert's.
OBJECT_COLORS = ((13, 255, 128), (255, 90, 0), (40, 120, 255), (230, 30, 200), (250, 230, 20),
                 (0, 220, 230), (150, 60, 255), (255, 255, 255))


def color_of(index):
    return OBJECT_COLORS[index % len(OBJECT_COLORS)]


def _pixel(xy):
    return tuple(int(round(v)) for v in xy)


def draw_cuboid(img, pts, thickness=1):
    """Cuboid edges (front red, rear blue, connecting green) and the centroid, in place."""
    p = [_pixel(xy) for xy in pts]
    for i, j in EDGES:
        color = FRONT if i < 4 and j < 4 else (REAR if i >= 4 else SIDE)
        cv2.line(img, p[i], p[j], color, thickness, cv2.LINE_AA)
    cv2.circle(img, p[8], max(2, thickness + 1), CENTRE, -1, cv2.LINE_AA)
    return img


def draw_axes(img, rvec, tvec, camera_matrix, length, thickness=1):
    """The object frame's x, y, z axes, ``length`` long (the pose's units), in place."""
    ends = np.array([[0, 0, 0], [length, 0, 0], [0, length, 0], [0, 0, length]], np.float64)
    pts = cv2.projectPoints(ends, rvec, tvec, camera_matrix, np.zeros((4, 1)))[0].reshape(4, 2)
    for k in range(3):
        cv2.line(img, _pixel(pts[0]), _pixel(pts[k + 1]), AXIS_COLORS[k], thickness, cv2.LINE_AA)
    return img


def draw_points(img, points, thickness=1, color=(255, 255, 255)):
    """The peaks a pose came from (None entries skipped): small rings."""
    for xy in points:
        if xy is not None:
            cv2.circle(img, _pixel(xy), 2 + thickness, color, thickness, cv2.LINE_AA)
    return img


def label(img, xy, text, color, scale=0.4):
    """``text`` in ``color`` with a dark outline, starting at ``xy`` (an object's name)."""
    org = _pixel(xy)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return img


def caption(img, text, org=(4, 14), scale=0.4):
    """White text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def heat(values, size):
    """A [0, 1] map as an RGB colour image of ``size`` (width, height)."""
    m = cv2.resize(np.asarray(values, np.float32), size, interpolation=cv2.INTER_NEAREST)
    m = (np.clip(m, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(m, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def tile(images, cols):
    """Equal-sized RGB images in a grid, blank tiles filling the last row."""
    rows = int(math.ceil(len(images) / float(cols)))
    blank = np.zeros_like(images[0])
    images = list(images) + [blank] * (rows * cols - len(images))
    return np.concatenate([np.concatenate(images[r * cols:(r + 1) * cols], axis=1)
                           for r in range(rows)], axis=0)
