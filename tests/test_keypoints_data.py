"""Synthetic LINEMOD, PLY, the BOP and SIXD readers, ray casting and occlusion marking."""
import json
import os

import cv2
import numpy as np
import pytest

from keypoints_helpers import make_sequence, run_prepare, write_sixd
from pose_train.errors import UserError
from pose_train.keypoints import linemod, mesh as meshlib, prepare, synth


@pytest.fixture(scope="module")
def bop(tmp_path_factory):
    return make_sequence(tmp_path_factory.mktemp("bop"), n=8)


def test_ply_roundtrip_binary_and_ascii(tmp_path):
    obj = synth.make_object(np.random.default_rng(0))
    for binary in (True, False):
        path = str(tmp_path / ("m%d.ply" % binary))
        meshlib.write_ply(path, obj["vertices"], obj["faces"], obj["colors"], binary=binary)
        back = meshlib.read_ply(path)
        np.testing.assert_allclose(back["vertices"], obj["vertices"], atol=1e-4)
        np.testing.assert_array_equal(back["faces"], obj["faces"])
        np.testing.assert_array_equal(back["colors"], obj["colors"])


def test_not_a_ply_is_a_user_error(tmp_path):
    bad = tmp_path / "x.ply"
    bad.write_text("hello")
    with pytest.raises(UserError, match="not a PLY"):
        meshlib.read_ply(str(bad))


def test_bop_reader_and_exact_synthetic_annotations(bop):
    seq = linemod.load_sequence(bop, 1)
    assert seq.layout == "bop" and len(seq.frames) == 8 and not seq.symmetric
    assert seq.diameter == pytest.approx(np.linalg.norm(synth.BOX_SIZE_MM), rel=1e-3)
    for fr in seq.frames:
        np.testing.assert_allclose(fr.R @ fr.R.T, np.eye(3), atol=1e-6)
        mask = cv2.imread(os.path.join(bop, "test/000001/mask/%06d_000000.png" % fr.id), 0) > 0
        uv, _ = meshlib.project(seq.model["vertices"], fr.K, fr.R, fr.t)
        ys, xs = np.nonzero(mask)
        # The rendered silhouette and the projected mesh agree to a pixel or so (thin corners): poses are exact.
        assert abs(xs.min() - uv[:, 0].min()) <= 1.5 and abs(ys.max() - uv[:, 1].max()) <= 1.5


def test_sixd_reader_matches_bop(bop, tmp_path):
    sixd = write_sixd(bop, str(tmp_path / "hinterstoisser"))
    a, b = linemod.load_sequence(bop, 1), linemod.load_sequence(sixd, 1)
    assert b.layout == "sixd" and len(a.frames) == len(b.frames)
    assert b.diameter == pytest.approx(a.diameter, rel=1e-5)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_allclose(fa.R, fb.R, atol=1e-6)
        np.testing.assert_allclose(fa.t, fb.t, atol=1e-6)
        np.testing.assert_allclose(fa.K, fb.K)
        assert fb.rgb.endswith("%04d.png" % fb.id) and fb.bbox is not None


def test_missing_sequence_names_both_layouts(tmp_path):
    with pytest.raises(UserError, match="BOP .* or SIXD"):
        linemod.load_sequence(str(tmp_path), 3)


def test_raycast_agrees_with_rasterizer(bop):
    seq = linemod.load_sequence(bop, 1)
    fr = seq.frames[0]
    _, depth = meshlib.rasterize(seq.model, fr.K, fr.R, fr.t, 320, 240)
    ys, xs = np.nonzero(depth > 0)
    pick = np.linspace(0, len(xs) - 1, 50).astype(int)
    d = meshlib.depth_at_pixels(np.c_[xs[pick], ys[pick]].astype(float), fr.K, fr.R, fr.t, seq.model)
    np.testing.assert_allclose(d, depth[ys[pick], xs[pick]], atol=1e-6)


def test_self_occlusion_front_and_back_face():
    obj = synth.make_object(np.random.default_rng(0))
    K, R, t = synth.LINEMOD_K, np.eye(3), np.array([0.0, 0.0, 600.0])
    half_z = synth.BOX_SIZE_MM[2] / 2
    front, back = [5.0, 3.0, -half_z], [5.0, 3.0, half_z]     # the camera looks along +z
    vis = meshlib.self_visible(np.array([front, back]), K, R, t, obj, tol=1.0)
    assert vis.tolist() == [True, False]


def test_occluder_marks_keypoints_hidden(tmp_path):
    data = make_sequence(tmp_path / "lm", n=16, seed=3)
    folder = run_prepare(data, tmp_path / "prep", kptype="fps", kpnum=16)
    ann = json.load(open(os.path.join(folder, "annotations.json")))
    infos = json.load(open(os.path.join(data, "test/000001/scene_gt_info.json")))
    seq = linemod.load_sequence(data, 1)
    kp3d = np.array(ann["keypoints_3d"])
    occluded_frames, under_occluder = 0, 0
    for fr, frame in zip(ann["frames"], seq.frames):
        vis = np.array(fr["vis"])
        seen = meshlib.self_visible(kp3d, frame.K, frame.R, frame.t, seq.model, 1.2)
        assert np.all(vis[~seen] == 1)              # behind the object itself: hidden
        if infos[str(fr["id"])][0]["visib_fract"] < 0.999:
            occluded_frames += 1
            # prepare forgives one pixel at the mask edge (keypoints on the silhouette)
            mask = cv2.dilate(cv2.imread(frame.mask_visib, 0), np.ones((3, 3), np.uint8)) > 0
            px = np.round(np.array(fr["kp2d"])).astype(int)
            inside = (px[:, 0] >= 0) & (px[:, 0] < 320) & (px[:, 1] >= 0) & (px[:, 1] < 240)
            under = inside & seen
            under[under] = ~mask[px[under, 1], px[under, 0]]
            assert np.all(vis[under] == 1)          # behind the occluder: hidden too
            under_occluder += int(under.sum())
    assert occluded_frames > 0 and under_occluder > 0


def test_split_file_and_ratio_are_deterministic(tmp_path):
    ids = list(range(20))
    a = prepare.choose_split(ids, None, 0.25, seed=4)
    assert a == prepare.choose_split(ids, None, 0.25, seed=4)
    assert sum(v == "test" for v in a.values()) == 5
    split = tmp_path / "train.txt"
    split.write_text("0\n3\n7\n")
    b = prepare.choose_split(ids, str(split), 0.25, seed=0)
    assert [i for i in ids if b[i] == "train"] == [0, 3, 7]
    split.write_text("99\n")
    with pytest.raises(UserError, match="lacks"):
        prepare.choose_split(ids, str(split), 0.25, seed=0)


def test_symmetry_follows_the_classic_protocol_unless_told():
    """BOP's lm marks 3, 7, 10, 11 symmetric; the classic protocol uses ADD-S for 10, 11 only."""
    marked = {"diameter": 100.0, "symmetries_discrete": [[1, 0, 0, 0] * 4]}
    assert linemod.symmetry(3, marked)[0] is False and linemod.symmetry(10, {})[0] is True
    assert "eggbox (10) and glue (11)" in linemod.symmetry(3, marked)[1]
    assert linemod.symmetry(3, marked, "bop") == (True, "BOP models_info.json symmetry fields")
    assert linemod.symmetry(3, {}, "3,7")[0] is True and linemod.symmetry(11, {}, "3, 7")[0] is False
    with pytest.raises(UserError, match="--symmetric takes classic, bop or object ids"):
        linemod.symmetry(3, {}, "eggbox")


def test_split_files_in_every_form_the_field_uses(tmp_path):
    """BB8 training_range.txt (ints), kp6d train.txt (0000 lines), YOLO-6D / singleshotpose /
    PVNet train.txt + test.txt (image paths), random:F; the test list is honoured."""
    ids = list(range(20))
    (tmp_path / "training_range.txt").write_text("0\n3\n7\n")
    (tmp_path / "kp6d.txt").write_text("0000\n0003\n0007\n")
    (tmp_path / "train.txt").write_text("".join("LINEMOD/ape/JPEGImages/%06d.jpg\n" % i
                                                for i in (0, 3, 7)))
    (tmp_path / "test.txt").write_text("".join("LINEMOD/ape/JPEGImages/%06d.jpg\n" % i
                                               for i in (1, 2, 4)))
    for name in ("training_range.txt", "kp6d.txt", "train.txt"):
        split = prepare.choose_split(ids, str(tmp_path / name), 0.2, 0)
        assert sorted(i for i, s in split.items() if s == "train") == [0, 3, 7], name
        assert sum(s == "test" for s in split.values()) == 17
    both = prepare.choose_split(ids, str(tmp_path / "train.txt"), 0.2, 0, str(tmp_path / "test.txt"))
    assert sorted(i for i, s in both.items() if s == "test") == [1, 2, 4]
    assert sum(s == "unused" for s in both.values()) == 14
    only_test = prepare.choose_split(ids, None, 0.2, 0, str(tmp_path / "test.txt"))
    assert sum(s == "train" for s in only_test.values()) == 17
    rand = prepare.choose_split(ids, "random:0.15", 0.2, 5)
    assert sum(s == "train" for s in rand.values()) == 3 and rand == prepare.choose_split(
        ids, "random:0.15", 0.2, 5)
    with pytest.raises(UserError, match="share 3 frames"):
        prepare.choose_split(ids, str(tmp_path / "train.txt"), 0.2, 0, str(tmp_path / "train.txt"))
    (tmp_path / "bad.txt").write_text("ape\n")
    with pytest.raises(UserError, match="names no frame number"):
        prepare.choose_split(ids, str(tmp_path / "bad.txt"), 0.2, 0)


def test_synthetic_set_has_bop_depth_in_mm(tmp_path):
    """depth/ PNGs in BOP's convention (uint16, x depth_scale = mm) agree with the pose."""
    data = make_sequence(tmp_path, n=2, seed=3)
    scene = os.path.join(str(data), "test", "000001")
    cam = json.load(open(os.path.join(scene, "scene_camera.json")))["0"]
    gt = json.load(open(os.path.join(scene, "scene_gt.json")))["0"][0]
    depth = cv2.imread(os.path.join(scene, "depth", "000000.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(os.path.join(scene, "mask", "000000_000000.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert depth.dtype == np.uint16 and ((depth > 0) == mask).all()
    z = depth[mask] * cam["depth_scale"]
    half = np.linalg.norm(synth.BOX_SIZE_MM) / 2
    assert abs(np.median(z) - gt["cam_t_m2c"][2]) < half


def test_a_model_in_metres_with_poses_in_mm_is_refused(tmp_path):
    data = make_sequence(tmp_path, n=2, seed=3)
    path = os.path.join(str(data), "models", "obj_000001.ply")
    model = meshlib.read_ply(path)
    meshlib.write_ply(path, model["vertices"] / 1000.0, model["faces"], model["colors"])
    info_path = os.path.join(str(data), "models", "models_info.json")
    info = json.load(open(info_path))
    info["1"]["diameter"] /= 1000.0
    json.dump(info, open(info_path, "w"))
    with pytest.raises(UserError, match="different units"):
        linemod.load_sequence(str(data), 1)


def test_a_nan_pose_is_named_as_such_not_as_a_unit_problem(tmp_path):
    """It advised rescaling the model."""
    data = make_sequence(tmp_path, n=2, seed=3)
    gt_path = os.path.join(str(data), "test", "000001", "scene_gt.json")
    gt = json.load(open(gt_path))
    gt["1"][0]["cam_t_m2c"][2] = float("nan")
    json.dump(gt, open(gt_path, "w"))
    with pytest.raises(UserError, match=r"scene_gt.json: frame 1: the pose holds NaN") as err:
        linemod.load_sequence(str(data), 1)
    assert "rescale" not in str(err.value)


def test_bop_symmetry_without_models_info_is_refused(tmp_path):
    """It said it had used that file's symmetry fields."""
    data = make_sequence(tmp_path, n=2, seed=3)
    assert linemod.load_sequence(str(data), 1, "bop").symmetry_rule.startswith("BOP")
    os.remove(os.path.join(str(data), "models", "models_info.json"))
    with pytest.raises(UserError, match="--symmetric bop .* has none"):
        linemod.load_sequence(str(data), 1, "bop")
    assert linemod.load_sequence(str(data), 1).symmetric is False


def test_mask_without_mask_visib_is_warned(tmp_path, capsys):
    import shutil
    data = make_sequence(tmp_path, n=2, seed=3)
    shutil.rmtree(os.path.join(str(data), "test", "000001", "mask_visib"))
    linemod.load_sequence(str(data), 1)
    err = capsys.readouterr().err
    assert "no mask_visib/" in err and "will count as visible" in err


def test_multi_object_multi_scene_bop_set(tmp_path):
    """An LM-O-like set: scenes not named after the object, other objects hiding it, frames
    without it and with it twice; every instance read, visibility filtered on request."""
    from pose_train.jobs import namespace
    out = tmp_path / "lmo"
    synth.main(namespace("synth-linemod", out=str(out), n=6, seq=1, others="5,6", scene=2,
                         scenes=2, width=160, height=120))
    assert sorted(os.listdir(out / "test")) == ["000002", "000003"]
    gt = json.load(open(out / "test" / "000002" / "scene_gt.json"))
    assert sorted({e["obj_id"] for es in gt.values() for e in es}) == [1, 5, 6]
    per_frame = [sum(e["obj_id"] == 1 for e in gt[str(i)]) for i in range(6)]
    assert per_frame == [1, 1, 2, 0, 1, 2]          # absent in frame 3, twice in 2 and 5
    seq = linemod.load_sequence(str(out), 1)
    assert len(seq.frames) == 2 * sum(per_frame)
    assert len({f.id for f in seq.frames}) == len(seq.frames)
    assert {f.id // 1000000 for f in seq.frames} == {2, 3}
    info = json.load(open(out / "test" / "000002" / "scene_gt_info.json"))
    fracts = [e["visib_fract"] for i in range(6) for e, g in zip(info[str(i)], gt[str(i)])
              if g["obj_id"] == 1]
    assert min(fracts) < 1.0                         # hidden by another object somewhere
    cut = sorted(fracts)[len(fracts) // 2]
    kept = linemod.load_sequence(str(out), 1, min_visib=cut)
    assert 0 < len(kept.frames) < len(seq.frames)
    five = linemod.load_sequence(str(out), 5)
    assert len(five.frames) == 12 and five.model["vertices"].shape[1] == 3
