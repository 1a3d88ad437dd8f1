# -*- coding: utf-8 -*-
"""DOPE's ROS-node post-processing as the node runs it, loop for loop: the reference that
pose_train_py27.dope_decode is checked against (tests) and timed against (benchmarks).

Rewritten from the node's behaviour (DESIGN.md, "DOPE's ROS node"): per map a Gaussian
smoothing, a 4-neighbour peak test, a 5x5 weighted mean per peak in Python loops; then for
every corner candidate a Python loop over every object computing the affinity angle. The
node smooths with scipy.ndimage.gaussian_filter; neither image ships scipy, so the same kernel
comes from pose_train_py27.dope_decode.smooth (cv2, mirror border, truncate 4). Runs in
Python 2.7 and 3.
"""
from __future__ import absolute_import, division

import cv2
import numpy as np

from pose_train_py27.cuboid import cuboid_vertices
from pose_train_py27.dope_decode import STRIDE, UPSAMPLING_OFFSET, smooth


def _peaks(belief, sigma, thresh_map, counter):
    raw = np.asarray(belief, dtype=np.float32)
    s = smooth(raw, sigma)
    left, right, up, down = (np.zeros(s.shape) for _ in range(4))
    left[1:, :], right[:-1, :] = s[:-1, :], s[1:, :]
    up[:, 1:], down[:, :-1] = s[:, :-1], s[:, 1:]
    binary = np.logical_and.reduce((s >= left, s >= right, s >= up, s >= down, s > thresh_map))
    cells = list(zip(np.nonzero(binary)[1], np.nonzero(binary)[0]))
    win, r = 5, 2
    out = []
    for x, y in cells:
        weights, xs, ys = np.zeros((win, win)), np.zeros((win, win)), np.zeros((win, win))
        for i in range(-r, r + 1):
            for j in range(-r, r + 1):
                if y + i < 0 or y + i >= raw.shape[0] or x + j < 0 or x + j >= raw.shape[1]:
                    continue
                ys[j + r, i + r] = y + i
                xs[j + r, i + r] = x + j
                weights[j + r, i + r] = raw[y + i, x + j]
        if weights.sum() != 0:
            px = np.average(xs, weights=weights) + UPSAMPLING_OFFSET
            py = np.average(ys, weights=weights) + UPSAMPLING_OFFSET
        else:
            px, py = x + UPSAMPLING_OFFSET, y + UPSAMPLING_OFFSET
        out.append((px, py, raw[y, x], counter))
        counter += 1
    return out, counter


def find_objects(beliefs, affinities, settings):
    """Same return shape as dope_decode.find_objects."""
    all_peaks, counter = [], 0
    for belief in beliefs:
        peaks, counter = _peaks(belief, settings["sigma"], settings["thresh_map"], counter)
        all_peaks.append(peaks)
    objects = [[[p[0], p[1]], [None] * 8, [None] * 8, p[2]] for p in all_peaks[-1]
               if p[2] > settings["thresh_points"]]
    for k, candidates in enumerate(all_peaks[:-1]):
        for cand in candidates:
            if cand[2] < settings["thresh_points"]:
                continue
            best, best_dist, best_angle = -1, 10000.0, 100.0
            for o, obj in enumerate(objects):
                # A weighted mean over negative map values can leave the map, where the node
                # raises IndexError (or wraps round, below 0); clipped here as in dope_decode.
                cx = min(max(int(cand[0]), 0), affinities.shape[2] - 1)
                cy = min(max(int(cand[1]), 0), affinities.shape[1] - 1)
                v_aff = np.array([affinities[2 * k, cy, cx], affinities[2 * k + 1, cy, cx]]) * 10
                v_aff = v_aff / np.sqrt((v_aff ** 2).sum())
                v_centre = np.array(obj[0]) - np.array(cand[:2])
                dist = np.linalg.norm(v_centre)
                v_centre = v_centre / dist
                angle = np.linalg.norm(v_centre - v_aff)
                if angle < settings["thresh_angle"] and (best_dist > 1000 or best_dist > dist):
                    best, best_angle, best_dist = o, angle, dist
            if best == -1:
                continue
            slot = objects[best]
            if slot[1][k] is None or (best_angle < settings["thresh_angle"]
                                      and best_dist < slot[2][k][1]):
                slot[1][k] = (cand[0], cand[1])
                slot[2][k] = (best_angle, best_dist)
    return [{"centroid": np.array(o[0]), "corners": o[1], "score": float(o[3])} for o in objects]


def find_object_poses(beliefs, affinities, camera_matrix, dimensions_cm, settings):
    """The node's poses: an object missing any of its 9 points is skipped ("Incomplete cuboid
    detection ... Skipping"); the others go to the iterative PnP on all 9. Returns
    [(location cm, rvec, 9 image points)] in the order of find_objects."""
    poses = []
    for obj in find_objects(beliefs, affinities, settings):
        points = list(obj["corners"]) + [tuple(obj["centroid"])]
        if any(p is None for p in points):
            continue
        img = np.array([[p[0] * STRIDE, p[1] * STRIDE] for p in points], np.float64)
        ok, rvec, tvec = cv2.solvePnP(cuboid_vertices(dimensions_cm).astype(np.float64), img,
                                      np.asarray(camera_matrix, np.float64), np.zeros((4, 1)),
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if ok:
            poses.append((tvec.reshape(3), rvec.reshape(3), img))
    return poses
