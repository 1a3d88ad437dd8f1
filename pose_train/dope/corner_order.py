"""Which order a frame's 8 projected corners are in, found from the frame's own pose.

DOPE's network learns one belief map per corner, and the ROS node's PnP reads map k as corner k
of its Cuboid3d order (pose_train_py27.cuboid). Data written in another order trains corner
labels that PnP reads as other corners: wrong poses or none, and no error anywhere. DOPE's own
BlenderProc generator wrote such data from June 2024 (commit 22a2468) to August 2025 (2dfe657).

Where a frame gives its object's location, quaternion_xyzw and cuboid size and the camera, the
cuboid is projected in Cuboid3d order and the annotated points are matched to it (each within
TOLERANCE_PX, the centroid too). A known order is put right on read; any other is reported.
"""
import os

import numpy as np

from pose_train_py27.cuboid import cuboid_vertices, quat_xyzw_to_matrix

TOLERANCE_PX = 2.0
# annotated corner i is Cuboid3d corner ORDERS[name][i]
ORDERS = {
    "nvisii": (0, 1, 2, 3, 4, 5, 6, 7),
    # DOPE's BlenderProc generator between 22a2468 and 2dfe657: its dope_order [6, 2, 1, 5, 7,
    # 3, 0, 4] over BlenderProc's box corners, where [5, 1, 2, 6, 4, 0, 3, 7] is NViSII's. Top
    # and bottom swap on each face: a mirror, which no rotation of the box can fit.
    "blenderproc-2024": (3, 2, 1, 0, 7, 6, 5, 4),
}


def projected(location_m, quaternion_xyzw, dimensions_m, intrinsics):
    """The 9 points (8 corners in Cuboid3d order, centroid last) the pose projects to."""
    vertices = cuboid_vertices(dimensions_m)
    camera = vertices @ quat_xyzw_to_matrix(quaternion_xyzw).T + np.asarray(location_m, np.float64)
    if (camera[:, 2] <= 1e-6).any():
        return None   # a corner at or behind the camera: no projection to compare
    fx, fy, cx, cy = (intrinsics[k] for k in ("fx", "fy", "cx", "cy"))
    return np.stack([fx * camera[:, 0] / camera[:, 2] + cx, fy * camera[:, 1] / camera[:, 2] + cy], 1)


def match(points, expected, tolerance=TOLERANCE_PX):
    """(order, why): the order of the 9 ``points`` (centroid meant last) against ``expected``,
    a tuple with points[i] = expected[order[i]], and why there is none: "off" (a point further
    than ``tolerance`` from every projected one) or "ambiguous" (corners seen edge-on, two
    within ``tolerance`` of each other)."""
    points, expected = np.asarray(points, np.float64), np.asarray(expected, np.float64)
    distance = np.linalg.norm(points[:, None] - expected[None], axis=2)
    if (distance.min(axis=1) > tolerance).any():
        return None, "off"
    order = tuple(int(j) for j in distance.argmin(axis=1))
    if len(set(order)) < 9 or (np.sort(distance, axis=1)[:, 1] <= tolerance).any():
        return None, "ambiguous"
    return order, None


def fitting_known_orders(points, expected, tolerance=TOLERANCE_PX):
    """The known orders the points fit, centroid included: one, where corners seen edge-on
    leave the general match ambiguous but rule out every other known order."""
    points, expected = np.asarray(points, np.float64), np.asarray(expected, np.float64)
    return [name for name, known in ORDERS.items()
            if np.linalg.norm(points - expected[list(known) + [8]], axis=1).max() <= tolerance]


def name_of(order):
    return next((name for name, known in ORDERS.items() if known == order), "unknown")


def in_cuboid3d_order(points, order):
    """``points`` rearranged so that corner k is Cuboid3d corner k (centroid stays last)."""
    out = np.array(points, np.float32, copy=True)
    for i, k in enumerate(order):
        out[k] = points[i]
    return out


def check_object(points, location_m, quaternion_xyzw, dimensions_m, intrinsics):
    """(the order's name or None, the points in Cuboid3d order). Known orders are put right;
    "unknown" (another correspondence, or the centroid not last), "off their pose" (no
    correspondence within tolerance) and "undetermined" (seen edge-on, and no single known
    order fits) are left as written; None when the frame cannot be checked."""
    if None in (location_m, quaternion_xyzw, dimensions_m) or not intrinsics or len(intrinsics) < 4:
        return None, points
    expected = projected(location_m, quaternion_xyzw, dimensions_m, intrinsics)
    if expected is None:
        return None, points
    order, why = match(points, expected)
    if order is None:
        fits = fitting_known_orders(points, expected) if why == "ambiguous" else []
        if len(fits) != 1:
            return ("off their pose" if why == "off" else "undetermined"), points
        order = ORDERS[fits[0]] + (8,)
    name = name_of(order[:8]) if order[8] == 8 else "unknown"
    return name, (in_cuboid3d_order(points, order[:8]) if name != "unknown" else points)


def check_frame(points, locations, dims, quats, intrinsics, image_path, report):
    """Each object's points of one frame checked against its own pose, in a data report's
    terms (a known other order put right, the rest said); the points in Cuboid3d order."""
    out, annotation = [], os.path.basename(os.path.splitext(image_path)[0] + ".json")
    for pts, loc, size, quat in zip(points, locations, dims, quats):
        name, pts = check_object(pts, loc, quat, size, intrinsics)
        if name is not None:
            report.orders[name] = report.orders.get(name, 0) + 1
        if name == "off their pose":
            report.add("corners off their pose", image_path, "the projected_cuboid in %s is not "
                       "where its location, quaternion_xyzw and cuboid_dimensions put the cuboid "
                       "(over %.0f px off; kept as written)" % (annotation, TOLERANCE_PX))
        elif name == "unknown":
            report.add("corner order unknown", image_path, "the projected_cuboid in %s lists its "
                       "9 points in an order of no known generator (kept as written)" % annotation)
        elif name not in (None, "nvisii", "undetermined"):
            report.add("corners reordered", image_path, "%s corner order in %s, put in DOPE's "
                       "Cuboid3d order" % (name, annotation))
        out.append(pts)
    return out
