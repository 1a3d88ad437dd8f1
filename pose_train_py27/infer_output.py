# -*- coding: utf-8 -*-
"""What ``infer dope`` draws and writes: the frame with its poses, the belief maps, and files
written atomically, a full disk said in one line naming the file (both runtimes)."""
from __future__ import absolute_import, division, print_function

import json

import cv2
import numpy as np

from pose_train_py27 import overlay
from pose_train_py27.atomic import write_atomic
from pose_train_py27.cuboid import quat_xyzw_to_matrix as quat_to_matrix
from pose_train_py27.dope_io import InputError, camera_matrix


def draw_frame(rgb, cam, networks, detections):
    """The frame with every pose's cuboid, axes and the peaks it came from; with several
    networks, each object's peaks and name in its own colour (its draw_colors in the node)."""
    img = rgb.copy()
    thickness = max(1, int(round(min(img.shape[:2]) / 240.0)))
    K = camera_matrix(cam)
    for d in detections:
        n = networks[d["network"]]
        color = tuple(n["color"]) if len(networks) > 1 else (255, 255, 255)
        overlay.draw_points(img, d["points_found"], thickness, color)
        if d["projected_cuboid"] is None:
            continue
        overlay.draw_cuboid(img, d["projected_cuboid"], thickness)
        rvec = cv2.Rodrigues(quat_to_matrix(d["quaternion_xyzw"]))[0]
        tvec = np.array(d["location"], np.float64) * 100.0   # cm, the cuboid's units
        overlay.draw_axes(img, rvec, tvec, K, 0.5 * min(n["dimensions_cm"]), thickness)
        if len(networks) > 1:
            overlay.label(img, np.add(d["projected_cuboid"][8], (6, -6)), n["object"], color)
    label = "%d detection(s), %d with a pose" % (
        len(detections), sum(d["location"] is not None for d in detections))
    return overlay.caption(img, label)


def belief_grid(beliefs, networks):
    """The 9 belief maps of each network, one block per network, named when there are several."""
    blocks = []
    for belief, n in zip(beliefs, networks):
        size = (belief.shape[2] * 4, belief.shape[1] * 4)
        tiles = [overlay.caption(overlay.heat(b, size), str(k) if len(networks) == 1
                                 else "%s %d" % (n["object"], k)) for k, b in enumerate(belief)]
        blocks.append(overlay.tile(tiles, cols=3))
    width = max(b.shape[1] for b in blocks)   # networks trained at other scales differ in size
    return np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), "constant")
                           for b in blocks], axis=0)


def write_png(path, rgb):
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise InputError("%s: OpenCV could not encode the overlay" % path)
    _written(path, lambda: write_atomic(path, lambda f: f.write(data.tobytes())))


def write_json(path, data):
    """Strict JSON (no NaN/Infinity, which other readers refuse): inputs are checked before."""
    _written(path, lambda: write_atomic(
        path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True, allow_nan=False)),
        binary=False))


def _written(path, write):
    """A full disk or a vanished folder is one line naming the file (the run is refused and
    removes the frames it wrote), not a traceback."""
    try:
        write()
    except (IOError, OSError) as err:
        raise InputError("%s: cannot write it (%s); free space there or pass another --outf"
                         % (path, getattr(err, "strerror", None) or err))
