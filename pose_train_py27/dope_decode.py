# -*- coding: utf-8 -*-
"""DOPE's post-processing: belief maps and affinity fields -> cuboid points -> poses.

The steps and thresholds are those of DOPE's ROS node (Melodic era and today's ros1 node):
  1. each belief map is smoothed with a Gaussian (scipy's ``gaussian_filter``, truncate 4,
     mirror border: the same kernel as cv2.GaussianBlur with BORDER_REFLECT);
  2. peaks are cells >= their 4 neighbours and > ``thresh_map``; a peak's position is the
     mean over the 5x5 window of the raw map weighted by its values, plus the node's 0.4395
     upsampling offset; its score is the raw map's value at the cell;
  3. every centroid peak scoring > ``thresh_points`` is an object; a corner peak scoring
     >= ``thresh_points`` joins the closest object its affinity vector points at (the unit
     vectors differ by < ``thresh_angle``), and per object and corner the closest one wins;
  4. an object missing any of its 9 points gets no pose: the node skips it ("Incomplete
     cuboid detection"), so a robot never sees it. With ``partial`` (--partial) it is posed
     from 4-8 points and labelled partial;
  5. cv2.solvePnP on the cuboid: ITERATIVE with >= 6 points; with 4-5, P3P on four of them
     (OpenCV cannot run ITERATIVE's DLT start on fewer than 6) refined on all; fewer than 4
     points give no pose.
This matches DOPE's ROS node, not DOPE master's standalone ``common/`` inference (EPNP under
OpenCV 4, peaks averaged over an 11-cell window).
The node loops over peaks and objects in Python; here each step is whole-array numpy, which
gives the same points (tests compare with a re-implementation of the node's loops).
"""
from __future__ import absolute_import, division

import cv2
import numpy as np

from pose_train_py27.cuboid import axis_angle_quat, cuboid_vertices, quat_multiply, rvec_to_quat

# The node's shipped config_pose.yaml; sigma is re-derived for the scale a network trained at.
NODE_SETTINGS = {"thresh_angle": 0.5, "thresh_map": 0.01, "sigma": 3.0, "thresh_points": 0.1}
UPSAMPLING_OFFSET = 0.4395   # the node's correction for the 1/8 maps' cell centres
STRIDE = 8
WINDOW = 5
# The node's sigma 3 suits 400 px training crops; at other crops an object spans
# proportionally fewer map cells and the same smoothing merges or erases its corners.
NODE_TRAINED_CROP = 400.0


def downscale_height(imagesize, frame_size):
    """Frame height at which objects look as they did in training: the trainer's crop
    (``imagesize``, jittered 0.8-1.25) spans the frame's shorter side."""
    width, height = frame_size
    return int(round(imagesize * float(height) / min(width, height)))


def decode_settings(meta):
    """The post-processing settings for weights with this sidecar (node defaults otherwise):
    the trainer stores them as ``decode``; older sidecars give the crop and frame sizes."""
    settings = dict(NODE_SETTINGS)
    if isinstance(meta.get("decode"), dict):
        settings.update(meta["decode"])
        return settings
    if meta.get("imagesize"):
        settings["sigma"] = round(NODE_SETTINGS["sigma"] * meta["imagesize"] / NODE_TRAINED_CROP, 3)
    if meta.get("imagesize") and meta.get("frame_size"):
        settings["downscale_height"] = downscale_height(meta["imagesize"], meta["frame_size"])
    return settings


def smooth(belief, sigma):
    """scipy.ndimage.gaussian_filter(belief, sigma) for a 2-D float map."""
    if sigma <= 0:
        return belief.astype(np.float32)
    radius = int(4.0 * sigma + 0.5)
    size = 2 * radius + 1
    return cv2.GaussianBlur(belief.astype(np.float32), (size, size), sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT)


def find_peaks(beliefs, sigma, thresh_map):
    """Per map, an (N, 3) array of x, y (map cells, offset included) and score, in row-major
    order. All maps at once: the node's per-peak loops become one gather."""
    raw = np.asarray(beliefs, dtype=np.float32)
    n, h, w = raw.shape
    s = np.zeros((n, h + 2, w + 2), np.float32)   # outside the map counts as 0, as in the node
    for k in range(n):
        s[k, 1:-1, 1:-1] = smooth(raw[k], sigma)
    c = s[:, 1:-1, 1:-1]
    peaks = ((c >= s[:, :-2, 1:-1]) & (c >= s[:, 2:, 1:-1]) & (c >= s[:, 1:-1, :-2])
             & (c >= s[:, 1:-1, 2:]) & (c > thresh_map))
    ks, ys, xs = np.nonzero(peaks)
    r = WINDOW // 2
    padded = np.zeros((n, h + 2 * r, w + 2 * r))
    padded[:, r:-r, r:-r] = raw
    offsets = np.arange(-r, r + 1)
    wy = ys[:, None, None] + offsets[None, :, None]           # (N, 5, 1) window rows
    wx = xs[:, None, None] + offsets[None, None, :]           # (N, 1, 5) window columns
    weights = padded[ks[:, None, None], wy + r, wx + r]      # (N, 5, 5), 0 outside the map
    total = weights.sum(axis=(1, 2))
    ok = total != 0
    safe = np.where(ok, total, 1.0)
    mx = np.where(ok, (weights * wx).sum(axis=(1, 2)) / safe, xs)
    my = np.where(ok, (weights * wy).sum(axis=(1, 2)) / safe, ys)
    found = np.stack([mx + UPSAMPLING_OFFSET, my + UPSAMPLING_OFFSET,
                      raw[ks, ys, xs].astype(np.float64)], axis=1).reshape(-1, 3)
    bounds = np.searchsorted(ks, np.arange(n + 1))
    return [found[bounds[k]:bounds[k + 1]] for k in range(n)]


def _unit(v):
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def find_objects(beliefs, affinities, settings):
    """Objects from one image's maps (9 beliefs, 16 affinities, numpy, map resolution).

    Returns a list of dicts: centroid (map cells), corners (8 entries, each (x, y) in map
    cells or None), score.
    """
    peaks = find_peaks(beliefs, settings["sigma"], settings["thresh_map"])
    centres = peaks[-1][peaks[-1][:, 2] > settings["thresh_points"]]
    objects = [{"centroid": c[:2], "score": float(c[2]), "corners": [None] * 8} for c in centres]
    if not objects:
        return objects
    h, w = affinities.shape[1:]
    for k, cand in enumerate(peaks[:-1]):
        cand = cand[cand[:, 2] >= settings["thresh_points"]]
        if not len(cand):
            continue
        col = np.clip(cand[:, 0].astype(np.int64), 0, w - 1)   # the node truncates to a cell
        row = np.clip(cand[:, 1].astype(np.int64), 0, h - 1)
        v_aff = _unit(np.stack([affinities[2 * k, row, col], affinities[2 * k + 1, row, col]],
                               axis=1).astype(np.float64))
        to_centre = centres[None, :, :2] - cand[:, None, :2]           # (N, objects, 2)
        dist = np.linalg.norm(to_centre, axis=-1)
        angle = np.linalg.norm(_unit(to_centre) - v_aff[:, None, :], axis=-1)
        with np.errstate(invalid="ignore"):
            allowed = angle < settings["thresh_angle"]      # NaN (zero vector) never points
        dist_allowed = np.where(allowed, dist, np.inf)
        best = np.argmin(dist_allowed, axis=1)
        for o in range(len(objects)):
            mine = np.nonzero((best == o) & allowed.any(axis=1))[0]
            if len(mine):
                pick = mine[np.argmin(dist[mine, o])]
                objects[o]["corners"][k] = (float(cand[pick, 0]), float(cand[pick, 1]))
    return objects


def solve_pnp(points_2d, dimensions_cm, camera_matrix, dist_coeffs=None):
    """(location cm, quaternion xyzw, 9 projected points) or (None, None, None).

    points_2d: 9 entries in image pixels (corners, centroid last), None where not found.
    dist_coeffs: the camera's distortion, for unrectified frames (the node's
    input_is_rectified: false); none for rectified ones.
    """
    cuboid = cuboid_vertices(dimensions_cm)
    found = [i for i, p in enumerate(points_2d) if p is not None]
    if len(found) < 4:
        return None, None, None
    obj = np.ascontiguousarray(cuboid[found], dtype=np.float64)
    img = np.ascontiguousarray([points_2d[i] for i in found], dtype=np.float64)
    K = np.asarray(camera_matrix, dtype=np.float64)
    dist = np.zeros((4, 1)) if not dist_coeffs else np.asarray(dist_coeffs, np.float64).reshape(-1, 1)
    if len(found) >= 6:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_ITERATIVE)
    else:
        ok, rvec, tvec = _p3p_refined(obj, img, K, dist)
    if not ok:
        return None, None, None
    location = tvec.reshape(3).astype(np.float64)
    quaternion = rvec_to_quat(rvec)
    projected = cv2.projectPoints(cuboid, rvec, tvec, K, dist)[0].reshape(9, 2)
    if location[2] < 0:
        # The node's convention for a solution behind the camera: mirror it in front and
        # turn it half a turn about the line of sight.
        location = -location
        quaternion = quat_multiply(axis_angle_quat(location, np.pi), quaternion)
    return location, quaternion, projected


def _p3p_refined(obj, img, K, dist):
    """P3P on each four of the points (it takes exactly four), the best on all of them kept,
    then refined with the iterative solver started from it."""
    best = None
    for skip in (range(len(obj)) if len(obj) == 5 else [None]):
        keep = [i for i in range(len(obj)) if i != skip]
        ok, rvec, tvec = cv2.solvePnP(obj[keep], img[keep], K, dist, flags=cv2.SOLVEPNP_P3P)
        if not ok:
            continue
        err = np.linalg.norm(cv2.projectPoints(obj, rvec, tvec, K, dist)[0].reshape(-1, 2) - img,
                             axis=1).mean()
        if best is None or err < best[0]:
            best = (err, rvec, tvec)
    if best is None:
        return False, None, None
    return cv2.solvePnP(obj, img, K, dist, rvec=best[1].copy(), tvec=best[2].copy(),
                        useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)


def detect(beliefs, affinities, camera_matrix, dimensions_cm, settings, dist_coeffs=None):
    """Detections for one image's maps, in the pixels of the image the network saw.

    Each detection: location (m), quaternion_xyzw, projected_cuboid (9 points, None when no
    pose), points_found (the peaks used: 9 entries, None where missing), score, partial (posed
    from fewer than 9 points: only with settings["partial"]; None when there is no pose).
    """
    detections = []
    for obj in find_objects(beliefs, affinities, settings):
        points = [None if c is None else (c[0] * STRIDE, c[1] * STRIDE) for c in obj["corners"]]
        points.append((obj["centroid"][0] * STRIDE, obj["centroid"][1] * STRIDE))
        complete = all(p is not None for p in points)
        location = quaternion = projected = None
        if complete or settings.get("partial"):
            location, quaternion, projected = solve_pnp(points, dimensions_cm, camera_matrix,
                                                        dist_coeffs)
        if not complete and location is not None and location[2] <= 0.5 * min(dimensions_cm):
            # P3P from few points can put the box through the camera; no pose, not that one
            location = quaternion = projected = None
        detections.append({
            "location": None if location is None else [float(v) / 100.0 for v in location],
            "quaternion_xyzw": None if quaternion is None else [float(v) for v in quaternion],
            "projected_cuboid": None if projected is None else projected.tolist(),
            "points_found": [None if p is None else [float(p[0]), float(p[1])] for p in points],
            "score": obj["score"], "partial": None if location is None else not complete})
    return detections
