"""Cuboid geometry for the generator and the tests (the parts inference shares live in
pose_train_py27.cuboid, the one copy both runtimes import).

Object frame = OpenCV axes (x right, y down, z forward); the front face is the one at +z.
Vertex order is DOPE's Cuboid3d order, centroid last:
  0 FrontTopRight  1 FrontTopLeft  2 FrontBottomLeft  3 FrontBottomRight
  4 RearTopRight   5 RearTopLeft   6 RearBottomLeft   7 RearBottomRight   8 Center
"""
import numpy as np

from pose_train_py27.cuboid import quat_xyzw_to_matrix

# Faces as vertex indices, ordered so each quad is a simple polygon.
FACES = {
    "front": (0, 1, 2, 3), "rear": (4, 5, 6, 7), "top": (0, 1, 5, 4),
    "bottom": (3, 2, 6, 7), "right": (0, 3, 7, 4), "left": (1, 2, 6, 5),
}
FACE_NORMALS = {
    "front": (0, 0, 1), "rear": (0, 0, -1), "top": (0, -1, 0),
    "bottom": (0, 1, 0), "right": (1, 0, 0), "left": (-1, 0, 0),
}


def random_quat_xyzw(rng):
    """Uniform random rotation (normalised 4D Gaussian), w kept non-negative."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return q * np.sign(q[3] or 1.0)


def intrinsics_matrix(fx, fy, cx, cy):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project(points_obj, quat_xyzw, location, K):
    """Pinhole projection of object-frame points posed by (quaternion, location) -> Nx2 pixels."""
    cam = points_obj @ quat_xyzw_to_matrix(quat_xyzw).T + np.asarray(location, dtype=np.float64)
    uvw = cam @ np.asarray(K).T
    return uvw[:, :2] / uvw[:, 2:3], cam
