"""Synthetic NViSII generator: fields, exact geometry, cached default dataset."""
import glob
import json
import os

import cv2
import numpy as np

from pose_train.dope.geometry import intrinsics_matrix, project
from pose_train_py27.cuboid import cuboid_vertices
from pose_train.dope.synth import OBJECT_SIZE, write_dataset


def test_reprojection_matches_projected_cuboid(tmp_path):
    write_dataset(str(tmp_path), n=6, seed=3, width=160, height=120, object_name="cube",
                  progress=False)
    jsons = sorted(glob.glob(str(tmp_path / "*.json")))
    assert len(jsons) == 6 and len(glob.glob(str(tmp_path / "*.png"))) == 6
    for path in jsons:
        ann = json.load(open(path))
        intr = ann["camera_data"]["intrinsics"]
        K = intrinsics_matrix(intr["fx"], intr["fy"], intr["cx"], intr["cy"])
        cubes = [o for o in ann["objects"] if o["class"] == "cube"]
        assert len(cubes) == 1
        for obj in ann["objects"]:
            assert set(obj) >= {"class", "visibility", "projected_cuboid", "location",
                                "quaternion_xyzw"}
            assert 0.0 <= obj["visibility"] <= 1.0
            uv, cam = project(cuboid_vertices(obj["cuboid_dimensions"]), obj["quaternion_xyzw"],
                              obj["location"], K)
            assert len(obj["projected_cuboid"]) == 9
            np.testing.assert_allclose(uv, np.array(obj["projected_cuboid"]), atol=1e-6)
            assert (cam[:, 2] > 0).all()                       # in front of the camera
        assert cubes[0]["cuboid_dimensions"] == list(OBJECT_SIZE)
        img = cv2.imread(path[:-5] + ".png")
        assert img.shape == (120, 160, 3)


def test_object_pixels_sit_where_the_projection_says(tmp_path):
    """The rendered cuboid covers its projected centroid (image and json agree)."""
    write_dataset(str(tmp_path), n=4, seed=1, width=160, height=120, progress=False)
    for path in sorted(glob.glob(str(tmp_path / "*.json"))):
        ann = json.load(open(path))
        obj = ann["objects"][0]
        if obj["visibility"] < 0.99:
            continue
        img = cv2.imread(path[:-5] + ".png").astype(int)
        pts = np.array(obj["projected_cuboid"])
        # A pixel far outside the cuboid's 2D hull vs the centroid pixel: both exist; the centroid
        # must be inside the hull polygon that was painted.
        hull = cv2.convexHull(pts[:8].astype(np.float32))
        assert cv2.pointPolygonTest(hull, tuple(map(float, pts[8])), False) >= 0
        assert img.shape[0] == ann["camera_data"]["height"]


def _front_faces(folder, size=48):
    """The object's front face (corners 0-3 in Cuboid3d order) warped to a square, from every
    frame where it faces the camera, is fully visible and spans enough pixels to compare."""
    from pose_train.dope.geometry import quat_xyzw_to_matrix
    faces = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        ann = json.load(open(path))
        obj = [o for o in ann["objects"] if o["class"] == "cube"][0]
        normal = quat_xyzw_to_matrix(obj["quaternion_xyzw"]) @ np.array([0.0, 0.0, 1.0])
        quad = np.float32(obj["projected_cuboid"][:4])
        area = cv2.contourArea(quad)
        if len(ann["objects"]) > 1 or obj["visibility"] < 0.999 or normal @ obj["location"] >= 0 \
                or area < 400:
            continue
        square = np.float32([[size, 0], [0, 0], [0, size], [size, size]])
        H = cv2.getPerspectiveTransform(quad, square)
        img = cv2.imread(path[:-5] + ".png", cv2.IMREAD_GRAYSCALE)
        warped = cv2.warpPerspective(img, H, (size, size)).astype(np.float64)
        faces.append(warped[4:-4, 4:-4])      # edges carry background where the quad rounds
    return faces


def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def test_the_object_looks_the_same_in_every_frame(tmp_path):
    """Its front face, warped to a square, correlates across frames (lighting aside): the
    network can tell its corners apart. Textures drawn per frame gave NCC near 0."""
    write_dataset(str(tmp_path), n=60, seed=11, width=320, height=240, progress=False,
                  distance=(0.25, 0.4))
    faces = _front_faces(str(tmp_path))
    assert len(faces) >= 6, len(faces)
    scores = [_ncc(faces[0], f) for f in faces[1:]]
    assert np.median(scores) > 0.9 and min(scores) > 0.4, scores


def test_the_look_is_the_class_s_own_and_stable_across_runs():
    from pose_train.dope.synth import class_textures
    a, b, c = class_textures("cube"), class_textures("Cube"), class_textures("bieropener")
    assert all(np.array_equal(a[f], b[f]) for f in a)
    assert not any(np.array_equal(a[f], c[f]) for f in a)
    # the six faces differ from one another
    keys = sorted(a)
    assert all(not np.array_equal(a[i], a[j]) for i in keys for j in keys if i < j)


def test_distance_is_parsed_and_bad_values_named():
    import pytest
    from pose_train.dope.synth import parse_distance
    from pose_train.errors import UserError
    assert parse_distance("0.2,0.4") == (0.2, 0.4)
    for bad in ("0.4", "0.5,0.2", "a,b", "0,1", "0.001,0.002", "inf,inf", "nan,1", "50,60"):
        with pytest.raises(UserError, match="--distance takes MIN,MAX"):
            parse_distance(bad)
