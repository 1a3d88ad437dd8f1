"""Isaac Sim's pose writer (format "dope") read as DOPE data. The frames are written here as
that writer writes them (isaacsim.replicator.writers.PoseWriter: a frame-level
``keypoint_order`` of box-corner names, points in that order, the pose in USD's camera frame,
no cuboid size), from synth dope frames whose DOPE-order truth is known."""
import json
import os

import cv2
import numpy as np

from pose_train.dope import data, isaac_sim
from pose_train.dope.synth import write_dataset
from pose_train_py27.cuboid import quat_xyzw_to_matrix, rvec_to_quat

WRITER_DEFAULT = ["Center", "LDB", "LDF", "LUB", "LUF", "RDB", "RDF", "RUB", "RUF"]


def _as_isaac_sim(path, order):
    ann = json.load(open(path))
    for obj in ann["objects"]:
        points = obj["projected_cuboid"]
        obj["projected_cuboid"] = [points[isaac_sim.DOPE_ORDER.index(n)] for n in order]
        obj["location"] = list(isaac_sim.FLIP @ np.asarray(obj["location"]))
        R = isaac_sim.FLIP @ quat_xyzw_to_matrix(obj["quaternion_xyzw"]) @ isaac_sim.HALF_TURN_Z
        obj["quaternion_xyzw"] = list(rvec_to_quat(cv2.Rodrigues(R)[0].ravel()))
        obj["prim_path"] = "/World/" + obj["class"]
        obj["truncation_ratio"] = 0.0
        del obj["cuboid_dimensions"], obj["name"]
    ann["keypoint_order"] = order
    ann["camera_data"] = {"intrinsics": ann["camera_data"]["intrinsics"],
                          "camera_view_matrix": np.eye(4).tolist(),
                          "camera_projection_matrix": np.eye(4).tolist()}
    json.dump(ann, open(path, "w"))


def test_any_declared_order_is_read_into_dopes(tmp_path):
    truth = tmp_path / "truth"
    write_dataset(str(truth), 4, seed=5, width=160, height=120, progress=False)
    expected, _ = data.scan([str(truth)], "cube", 64)
    for name, order in (("default", WRITER_DEFAULT), ("dope", list(isaac_sim.DOPE_ORDER))):
        folder = tmp_path / name
        write_dataset(str(folder), 4, seed=5, width=160, height=120, progress=False)
        for stem in sorted(os.listdir(folder)):
            if stem.endswith(".json"):
                _as_isaac_sim(folder / stem, order)
        samples, report = data.scan([str(folder)], "cube", 64, strict=True)
        assert [s.dialect for s in samples] == ["isaac-sim"] * 4
        for got, want in zip(samples, expected):
            np.testing.assert_allclose(got.points, want.points, atol=1e-9)
            np.testing.assert_allclose(got.locations_m, want.locations_m, atol=1e-9)
            for q, p in zip(got.quaternions, want.quaternions):
                np.testing.assert_allclose(quat_xyzw_to_matrix(q), quat_xyzw_to_matrix(p), atol=1e-9)


def test_an_order_that_is_not_the_box_corners_is_skipped_and_said(tmp_path):
    write_dataset(str(tmp_path), 2, seed=1, width=96, height=72, progress=False)
    _as_isaac_sim(tmp_path / "000000.json", WRITER_DEFAULT)
    ann = json.load(open(tmp_path / "000001.json"))
    ann["keypoint_order"] = ["Center", "A", "B"]
    json.dump(ann, open(tmp_path / "000001.json", "w"))
    samples, report = data.scan([str(tmp_path)], "cube", 64)
    assert len(samples) == 1
    assert any("keypoint_order" in line and "000001" in line for line in report.lines)
