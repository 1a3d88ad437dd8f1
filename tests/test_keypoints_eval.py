"""Evaluation: PnP from keypoints, ADD/ADD-S/2D projection, failures, table and overlay."""
import json
import os

import numpy as np
import pytest
import torch

from keypoints_helpers import make_sequence, run_prepare
from pose_train_py27.nets import FastPose
from pose_train.jobs import namespace
from pose_train.keypoints import data as kpdata, evaluate, metrics, synth


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    folder = run_prepare(make_sequence(root / "lm", n=12, seed=5), root / "prep", kptype="fps", kpnum=8)
    return folder


def _eval_args(model, data, outf, **kw):
    args = dict(model=str(model), data=str(data), outf=str(outf), seq=1, kptype="fps", detections=None,
                topk=None, seed=0, boxes="jitter", inputResH=64, inputResW=64, pck_alpha=0.05)
    args.update(kw)
    return namespace("eval-keypoints", **args)


def test_pnp_from_true_keypoints_recovers_the_pose(prepared):
    ann, _ = kpdata.load_prepared(prepared)
    mesh = kpdata.load_model_mesh(prepared)
    kp3d = np.array(ann["keypoints_3d"])
    verts = mesh["vertices"]
    for fr in ann["frames"][:4]:
        kp2d = np.array(fr["kp2d"])
        pose = evaluate.solve_pose(kp3d, kp2d, np.ones(len(kp3d)), fr["K"], topk=8)
        row = metrics.frame_metrics(fr, kp2d, pose, verts, ann, 0.05)
        assert row["add"] < 0.5 and row["proj"] < 0.1 and row["pck"] == 1.0
        assert row["add_ok"] and row["proj_ok"] and not row["failed"]


def test_add_s_forgives_symmetry():
    verts = synth.make_object(np.random.default_rng(0))["vertices"]
    flip = np.diag([-1.0, -1.0, 1.0])          # the box is symmetric under a half turn about z
    t = np.array([0, 0, 500.0])
    assert metrics.add_error(verts, np.eye(3), t, flip, t, symmetric=False) > 30
    assert metrics.add_error(verts, np.eye(3), t, flip, t, symmetric=True) < 1e-6


def test_eval_end_to_end_counts_failures(prepared, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "fastpose.pkl"
    torch.save(FastPose(8, architecture="resnet50").state_dict(), model)
    ann, _ = kpdata.load_prepared(prepared)
    test_ids = [f["id"] for f in ann["frames"] if f["split"] == "test"]
    first = next(f for f in ann["frames"] if f["id"] == test_ids[0])
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": test_ids[0], "bbox": first["bbox"], "score": 0.9}]))
    evaluate.main(_eval_args(model, os.path.dirname(prepared), tmp_path / "out", detections=str(dets)))
    results = json.load(open(tmp_path / "out" / "results.json"))
    row = results["01_fps_8"]
    assert row["frames"] == len(test_ids) and row["boxes"] == "detections"
    assert row["failures"] >= len(test_ids) - 1     # no detection: a failure, not dropped
    table = open(tmp_path / "out" / "results.md").read()
    assert "| 01 | fps | 8 |" in table
    frames = json.load(open(tmp_path / "out" / "eval_01_fps_8" / "frames.json"))
    assert all(f["failed"] for f in frames if f["id"] != test_ids[0])
    assert os.path.getsize(tmp_path / "out" / "eval_01_fps_8" / "overlay.png") > 0


def test_eval_with_exact_boxes_and_topk(prepared, tmp_path):
    model = tmp_path / "fastpose.pkl"
    torch.save({"module." + k: v for k, v in FastPose(8, architecture="resnet50").state_dict().items()},
               model)                               # a DataParallel-era file evaluates too
    evaluate.main(_eval_args(model, prepared, tmp_path / "out", boxes="gt", topk=4))
    row = json.load(open(tmp_path / "out" / "results.json"))["01_fps_8"]
    assert row["boxes"] == "gt" and row["arch"] == "resnet50" and 0 <= row["pck"] <= 1


def test_cli_synth_prepare_eval(tmp_path):
    from pose_train.cli import main
    lm, prep, out = str(tmp_path / "lm"), str(tmp_path / "prep"), str(tmp_path / "eval")
    main(["--local", "synth", "linemod", "--out", lm, "--n", "8", "--seq", "02", "--width", "160",
          "--height", "120"])
    main(["--local", "prepare", "keypoints", "--seq", "2", "--kptype", "random", "--kpnum", "6",
          "--data", lm, "--outf", prep, "--crop_size", "48", "--test_ratio", "0.5"])
    model = str(tmp_path / "w.pkl")
    torch.save(FastPose(6, architecture="resnet50").state_dict(), model)
    main(["--local", "eval", "keypoints", model, "--data", prep, "--seq", "02", "--kptype", "random",
          "--outf", out, "--inputResH", "64", "--inputResW", "32"])
    assert json.load(open(os.path.join(out, "results.json")))["02_random_6"]["frames"] == 4


def test_targets_decode_back_to_image_pixels(prepared):
    """Target heatmaps, read the way eval reads predictions, give the annotated pixels back:
    the heatmap <-> input <-> crop <-> image conventions agree end to end."""
    from pose_train.keypoints import heatmaps, transforms
    ann, crops = kpdata.load_prepared(prepared)
    idx = list(range(len(ann["frames"])))
    data = kpdata.to_device(ann, crops, idx, torch.device("cpu"))
    _, target, weight, affine = transforms.make_batch(data, torch.tensor(idx), (64, 64), 1.0,
                                                      train_occluded=True)
    heat, _ = heatmaps.decode(target)
    kp_crop = transforms.apply_points(affine, heatmaps.from_heat(heat)).numpy()
    for n, fr in enumerate(ann["frames"]):
        back = kp_crop[n] / fr["crop"]["scale"] + np.array(fr["crop"]["origin"])
        err = np.linalg.norm(back - np.array(fr["kp2d"]), axis=1)[weight[n].numpy() > 0]
        assert err.size and err.max() < 0.05 / fr["crop"]["scale"] + 0.05, err


def test_eval_takes_the_seeds_loadModel_flag():
    from pose_train.cli import parse
    given = parse(["eval", "keypoints", "--loadModel", "w.pkl"])[1]
    assert given["model"] == "w.pkl"


def test_every_fastpose_batchnorm_has_train_sppes_momentum():
    import torch.nn as nn
    from pose_train_py27.nets import FastPose
    moms = {m.momentum for m in FastPose(num_classes=3).modules() if isinstance(m, nn.BatchNorm2d)}
    assert moms == {0.1}


def test_add_s_is_the_exact_closest_point_distance_over_every_model_point():
    """KD-tree ADD-S against brute force on a 3,000-point model; a 2,000-point subsample (the
    old way) is biased upwards."""
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(3000, 3)) * [60.0, 30.0, 20.0]
    R, t = np.eye(3), np.array([0.0, 0.0, 800.0])
    angle = 0.3
    R_hat = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                      [0, 0, 1]])
    t_hat = t + [2.0, -1.0, 5.0]
    a, b = verts @ R.T + t, verts @ R_hat.T + t_hat
    brute = np.mean([np.linalg.norm(b - p, axis=1).min() for p in a])
    assert metrics.add_error(verts, R, t, R_hat, t_hat, True) == pytest.approx(brute, rel=1e-12)
    sub = verts[np.linspace(0, len(verts) - 1, 2000).astype(int)]
    assert metrics.add_error(sub, R, t, R_hat, t_hat, True) > brute
    plain = np.linalg.norm(a - b, axis=1).mean()
    assert metrics.add_error(verts, R, t, R_hat, t_hat, False) == pytest.approx(plain)
