"""Frames from Isaac Sim's pose writer (isaacsim.replicator.writers.PoseWriter, format "dope"),
read as DOPE data.

What that writer puts in each frame JSON, and how it is read here:
- ``keypoint_order``: the names of the 9 ``projected_cuboid`` points, L/R, D/U, B/F being the
  local box's x, y, z min/max, plus ``Center``. Its DOPE order is LUF RUF RDF LDF LUB RUB RDB
  LDB Center; its default order starts with Center. Points are put in DOPE's order by name,
  whatever the declared order (this is the dialect's declared order: no pose is needed).
- ``location``: the object's origin in USD's camera frame (x right, y up, looking down -z),
  in scene units; read into OpenCV's camera frame (y and z negated) and metres
  (``camera_data.meters_per_scene_unit`` when written, else 1).
- ``quaternion_xyzw``: the object-to-camera rotation in USD's camera frame. DOPE's cuboid
  frame is the local box turned half a turn about z (the name order above maps LUF to DOPE's
  FrontTopRight), so the rotation read is F . R . Rz(180), F = diag(1, -1, -1).
The writer's "dope" format carries no cuboid size, so these frames are not checked against
their pose (the size can come from the sidecar or --dimensions for infer and eval).
"""
import cv2
import numpy as np

from pose_train_py27.cuboid import quat_xyzw_to_matrix, rvec_to_quat

DOPE_ORDER = ("LUF", "RUF", "RDF", "LDF", "LUB", "RUB", "RDB", "LDB", "Center")
FLIP = np.diag([1.0, -1.0, -1.0])        # USD camera axes <-> OpenCV camera axes
HALF_TURN_Z = np.diag([-1.0, -1.0, 1.0])


def is_isaac_sim(ann):
    return isinstance(ann, dict) and "keypoint_order" in ann


def _order(ann):
    names = [str(n) for n in ann.get("keypoint_order") or []]
    if sorted(names) != sorted(DOPE_ORDER):
        return None, ("keypoint_order %s is not the 9 names of Isaac Sim's cuboid (%s); frame "
                      "skipped" % (names, " ".join(DOPE_ORDER)))
    return [names.index(n) for n in DOPE_ORDER], None


def _rotation(quat_xyzw):
    R = FLIP @ quat_xyzw_to_matrix(quat_xyzw) @ HALF_TURN_Z
    q = np.asarray(rvec_to_quat(cv2.Rodrigues(R)[0].ravel()), np.float64)
    return [float(v) for v in q * np.sign(q[3] or 1.0)]


def to_dope(ann, report_problem):
    """Rewrite an Isaac Sim frame in place as a NViSII-layout frame; False (with the reason
    given to ``report_problem``) when its keypoint_order cannot be read."""
    order, why = _order(ann)
    if order is None:
        report_problem(why)
        return False
    metres = float((ann.get("camera_data") or {}).get("meters_per_scene_unit") or 1.0)
    for obj in ann.get("objects") or []:
        points = obj.get("projected_cuboid")
        if isinstance(points, list) and len(points) == 9:
            obj["projected_cuboid"] = [points[i] for i in order]
        try:
            if obj.get("location") is not None:
                obj["location"] = list(FLIP @ np.asarray(obj["location"], np.float64) * metres)
            if obj.get("quaternion_xyzw") is not None:
                obj["quaternion_xyzw"] = _rotation(obj["quaternion_xyzw"])
        except (TypeError, ValueError):
            pass   # left as written: the pose check reports numbers that are not numbers
    ann.pop("keypoint_order")
    ann["dialect"] = "isaac-sim"
    return True
