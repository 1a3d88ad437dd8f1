"""Synthetic NViSII generator: fields, exact geometry, cached default dataset."""
import glob
import json
import os

import cv2
import numpy as np

from pose_train.dope.geometry import intrinsics_matrix, project
from pose_train_py27.cuboid import cuboid_vertices
from pose_train.dope.synth import OBJECT_SIZE, cached_dataset, write_dataset


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


def test_cached_dataset_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("POSE_TRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("pose_train.dope.synth.write_dataset",
                        _counting_writer(calls := []))
    path, made = cached_dataset(str(tmp_path / "out"), 3, seed=0, width=64, height=48)
    assert made and os.path.isdir(path) and path.startswith(str(tmp_path / "cache"))
    again, made2 = cached_dataset(str(tmp_path / "out"), 3, seed=0, width=64, height=48)
    assert again == path and not made2 and len(calls) == 1
    other, _ = cached_dataset(str(tmp_path / "out"), 4, seed=0, width=64, height=48)
    assert other != path and len(calls) == 2
    monkeypatch.delenv("POSE_TRAIN_CACHE")
    local, _ = cached_dataset(str(tmp_path / "out"), 3, seed=0, width=64, height=48)
    assert local.startswith(str(tmp_path / "out" / ".cache"))


def _counting_writer(calls):
    def fake(out, n, seed, width, height, object_name):
        calls.append((n, seed, width, height))
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "000000.json"), "w").write("{}")
    return fake
