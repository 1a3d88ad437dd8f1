"""prepare keypoints for every --kptype on a synthetic sequence, and through the CLI."""
import json
import os

import numpy as np
import pytest

from keypoints_helpers import box_surface_distance, make_sequence, run_prepare, write_sixd
from pose_train.errors import UserError
from pose_train.keypoints import data as kpdata
from pose_train.keypoints import designate, synth


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return make_sequence(tmp_path_factory.mktemp("lm"), n=12, seed=1)


@pytest.mark.parametrize("kptype,kpnum", [("sift", 8), ("fps", 8), ("cluster", 8), ("corner", 9),
                                          ("random", 8)])
def test_every_kptype(lm, tmp_path, kptype, kpnum):
    folder = run_prepare(lm, tmp_path, kptype=kptype, kpnum=kpnum)
    ann, crops = kpdata.load_prepared(folder)
    kp3d = np.array(ann["keypoints_3d"])
    assert kp3d.shape == (kpnum, 3) and ann["kpnum"] == kpnum and ann["layout"] == "bop"
    if kptype == "corner":
        half = np.array(synth.BOX_SIZE_MM) / 2
        np.testing.assert_allclose(np.abs(kp3d[:8]), np.tile(half, (8, 1)), atol=1e-3)
        np.testing.assert_allclose(kp3d[8], 0, atol=1e-3)
    else:
        assert box_surface_distance(kp3d).max() < 1e-3      # on the mesh surface
        assert len(np.unique(kp3d.round(3), axis=0)) == kpnum
    assert crops.shape == (12, 64, 64, 3) and crops.dtype == np.uint8
    assert {f["split"] for f in ann["frames"]} == {"train", "test"}
    for name in ("keypoints.ply", "model.ply", "split.json"):
        assert os.path.isfile(os.path.join(folder, name))


def test_keypoints_are_spread_out(lm, tmp_path):
    for kptype in ("sift", "fps"):
        ann, _ = kpdata.load_prepared(run_prepare(lm, tmp_path / kptype, kptype=kptype, kpnum=8))
        kp = np.array(ann["keypoints_3d"])
        d = np.linalg.norm(kp[:, None] - kp[None], axis=2) + np.eye(len(kp)) * 1e9
        assert d.min() > 0.05 * np.linalg.norm(synth.BOX_SIZE_MM)


def test_crops_hold_the_keypoints(lm, tmp_path):
    """Crop pixel = scale * (image pixel - origin): check against a re-projection."""
    ann, crops = kpdata.load_prepared(run_prepare(lm, tmp_path, kptype="corner", kpnum=9))
    boxes, kps, vis = kpdata.frame_arrays(ann["frames"])
    centre = kps[:, 8]                               # the box centre projects inside the object
    assert np.all((centre > 0) & (centre < 64))
    assert np.all(boxes[:, 0] < centre[:, 0]) and np.all(centre[:, 0] < boxes[:, 2])
    # Context 2: the box spans about half of the crop.
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_allclose(side, 32, atol=1)


def test_sixd_layout_prepares_too(lm, tmp_path):
    sixd = write_sixd(lm, str(tmp_path / "sixd"))
    ann, _ = kpdata.load_prepared(run_prepare(sixd, tmp_path / "out", kptype="fps", kpnum=6))
    assert ann["layout"] == "sixd" and len(ann["frames"]) == 12


def test_bad_requests_are_user_errors(lm, tmp_path):
    with pytest.raises(UserError, match="--kpnum 9"):
        run_prepare(lm, tmp_path, kptype="corner", kpnum=8)
    with pytest.raises(UserError, match="--kptype"):
        run_prepare(lm, tmp_path, kptype="harris", kpnum=8)
    with pytest.raises(UserError, match="at least 4"):
        run_prepare(lm, tmp_path, kptype="fps", kpnum=3)


def test_fps_is_farthest_first():
    pts = np.array([[0, 0, 0], [1, 0, 0], [10, 0, 0], [5, 0, 0.0]])
    out = designate.farthest_points(pts, 3, start=0)
    np.testing.assert_array_equal(out[:, 0], [0, 10, 5])


def test_cli_prepare_accepts_01(lm, tmp_path, capsys):
    from pose_train.cli import main
    main(["--local", "prepare", "keypoints", "--seq", "01", "--kptype", "fps", "--kpnum", "5",
          "--data", lm, "--outf", str(tmp_path), "--crop_size", "32"])
    ann = json.load(open(tmp_path / "kp_01_fps_5" / "annotations.json"))
    assert ann["seq"] == 1 and ann["crop_size"] == 32


@pytest.mark.parametrize("form", ["ply", "txt", "json"])
def test_given_keypoints_are_imported_in_order_with_their_source(lm, tmp_path, form):
    """kp6d ships designated keypoints as vertex-only PLY (kps/N/TYPE/obj_XX.ply)."""
    from pose_train.keypoints import mesh
    given = np.array([[10.0, -5, 3], [0, 20, -8], [-15, 0, 0], [4, 4, 12], [1, -9, 6]])
    path = tmp_path / ("obj_01." + form)
    if form == "ply":
        mesh.write_ply(str(path), given)           # vertices only, as kp6d's files
        assert mesh.read_ply(str(path), faces=False)["faces"].shape == (0, 3)
        with pytest.raises(UserError, match="needs vertex and face"):
            mesh.read_ply(str(path))
    elif form == "txt":
        path.write_text("\n".join(" ".join(str(v) for v in row) for row in given))
    else:
        path.write_text(json.dumps({"keypoints": given.tolist()}))
    folder = run_prepare(lm, tmp_path, kptype="sift", kpnum=17, keypoints=str(path))
    ann, _ = kpdata.load_prepared(folder)
    np.testing.assert_allclose(ann["keypoints_3d"], given)
    assert ann["kpnum"] == 5 and ann["keypoints_source"] == str(path)
    assert folder.endswith("kp_01_sift_5")


def test_train_and_test_lists_leave_other_frames_out(lm, tmp_path):
    (tmp_path / "train.txt").write_text("LINEMOD/ape/JPEGImages/000000.jpg\nLINEMOD/ape/JPEGImages/000001.jpg\n")
    (tmp_path / "test.txt").write_text("0005\n")
    folder = run_prepare(lm, tmp_path, kptype="fps", kpnum=8, split=str(tmp_path / "train.txt"),
                         test_split=str(tmp_path / "test.txt"))
    ann, crops = kpdata.load_prepared(folder)
    assert [(f["id"], f["split"]) for f in ann["frames"]] == [(0, "train"), (1, "train"), (5, "test")]
    assert crops.shape[0] == 3


def test_prepare_reads_an_lmo_like_set(tmp_path):
    from pose_train.jobs import namespace
    out = tmp_path / "lmo"
    synth.main(namespace("synth-linemod", out=str(out), n=4, seq=1, others="5", scene=2,
                         width=128, height=96))
    folder = run_prepare(str(out), tmp_path, kptype="fps", kpnum=8, min_visib=0.1)
    ann, crops = kpdata.load_prepared(folder)
    assert len(ann["frames"]) == crops.shape[0] >= 3
    assert all(f["id"] >= 2000000 for f in ann["frames"])   # scene 2, instance-aware ids
