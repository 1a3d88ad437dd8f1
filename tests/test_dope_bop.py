"""A BOP dataset read as DOPE data: cuboids from models_info.json, posed by scene_gt.json.

The BOP set is written here as bop_toolkit documents its format (mm, row-major cam_R_m2c and
cam_K, image ids as json keys), from synth dope frames whose poses and projected cuboids are
known; read through BOP, each frame must give the same DOPE points and pose.
"""
import json
import os
import shutil

import numpy as np
import pytest

import infer_helpers as ih
from pose_train.dope.data import scan
from pose_train.errors import UserError
from pose_train_py27.cuboid import quat_xyzw_to_matrix, rotation_angle_deg


@pytest.fixture(scope="module")
def nvisii(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bop") / "nvisii"
    ih.synth_frames(folder, 4, seed=31)
    return folder


def write_bop(nvisii, root, offset_mm=(0.0, 0.0, 0.0)):
    """ROOT/models/models_info.json + ROOT/train_pbr/000000/{scene_gt,scene_camera,
    scene_gt_info}.json + rgb/; the cube is obj 1, its model's origin ``offset_mm`` from the
    box centre; a second object (2) sits in frame 0 only."""
    scene = os.path.join(str(root), "train_pbr", "000000")
    os.makedirs(os.path.join(scene, "rgb"))
    os.makedirs(os.path.join(str(root), "models"))
    gt, cams, info, size = {}, {}, {}, None
    for k, name in enumerate(sorted(n for n in os.listdir(str(nvisii)) if n.endswith(".json"))):
        ann = json.load(open(os.path.join(str(nvisii), name)))
        cube = [o for o in ann["objects"] if o["class"] == "cube"][0]
        size = np.array(cube["cuboid_dimensions"]) * 1000.0
        R = quat_xyzw_to_matrix(cube["quaternion_xyzw"])
        # The model origin sits at box centre - offset: t moves by R @ offset.
        t = np.array(cube["location"]) * 1000.0 - R.dot(offset_mm)
        gt[str(k)] = [{"cam_R_m2c": R.flatten().tolist(), "cam_t_m2c": t.tolist(), "obj_id": 1}]
        info[str(k)] = [{"visib_fract": cube.get("visibility", 1.0)}]
        if k == 0:
            gt[str(k)].append({"cam_R_m2c": np.eye(3).flatten().tolist(), "cam_t_m2c": [0, 0, 900], "obj_id": 2})
            info[str(k)].append({"visib_fract": 0.5})
        i = ann["camera_data"]["intrinsics"]
        cams[str(k)] = {"cam_K": [i["fx"], 0, i["cx"], 0, i["fy"], i["cy"], 0, 0, 1], "depth_scale": 1.0}
        shutil.copy(os.path.join(str(nvisii), name[:-5] + ".png"), os.path.join(scene, "rgb", "%06d.png" % k))
    for name, data in (("scene_gt.json", gt), ("scene_camera.json", cams), ("scene_gt_info.json", info)):
        json.dump(data, open(os.path.join(scene, name), "w"))
    low = -size / 2.0 + np.asarray(offset_mm)
    models = {"1": dict(diameter=float(np.linalg.norm(size)), min_x=low[0], min_y=low[1], min_z=low[2],
                        size_x=size[0], size_y=size[1], size_z=size[2]),
              "2": dict(diameter=100.0, min_x=-30, min_y=-30, min_z=-30, size_x=60, size_y=60, size_z=60)}
    json.dump(models, open(os.path.join(str(root), "models", "models_info.json"), "w"))
    return str(root)


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (12.0, -7.0, 30.0)])
@pytest.mark.parametrize("name", ["obj_000001", "1"])
def test_a_bop_object_reads_as_the_same_dope_frames(nvisii, tmp_path, offset, name):
    root = write_bop(nvisii, tmp_path / "bop", offset)
    truth = {os.path.basename(s.image): s for s in scan([str(nvisii)], "cube", 64)[0]}
    samples, report = scan([root], name, 64)
    assert len(samples) == 4 and {s.dialect for s in samples} == {"bop"}
    for s in samples:
        want = truth[os.path.basename(s.image)]
        np.testing.assert_allclose(s.points, want.points, atol=1e-3)
        np.testing.assert_allclose(s.locations_m, want.locations_m, atol=1e-6)
        np.testing.assert_allclose(s.dimensions_m, want.dimensions_m, atol=1e-9)
        assert rotation_angle_deg(s.quaternions[0], want.quaternions[0]) < 1e-4
        assert s.intrinsics == want.intrinsics


def test_bop_and_nvisii_folders_train_together_and_bad_names_are_refused(nvisii, tmp_path):
    root = write_bop(nvisii, tmp_path / "bop")
    samples, _ = scan([root, str(nvisii)], "obj_000001", 64)
    # The NViSII folder's frames show no obj_000001: they train as negatives (empty maps).
    assert len(samples) == 8 and sum(len(s.points) for s in samples) == 4
    with pytest.raises(UserError, match=r"has no object 'obj_000009'.*ids here: 1, 2"):
        scan([root], "obj_000009", 64)


def test_a_bop_set_without_the_object_trains_as_negatives_beside_others(nvisii, tmp_path, capsys):
    """It refused the whole run, where a NViSII folder without the object trains as negatives."""
    root = write_bop(nvisii, tmp_path / "bop")
    samples, _ = scan([root, str(nvisii)], "cube", 64)
    bop_frames = [s for s in samples if s.dialect == "bop"]
    assert len(bop_frames) == 4 and not any(len(s.points) for s in bop_frames)
    assert sum(len(s.points) for s in samples) == 4                    # the NViSII cubes
    assert "--data %s holds no 'cube' object: its 4 frames train as negatives" % root \
        in capsys.readouterr().err


def test_validate_dope_reads_a_bop_set(nvisii, tmp_path, capsys):
    root = write_bop(nvisii, tmp_path / "bop")
    assert ih.local_cli("validate", "dope", "--data", root, "--object", "obj_000002", "--outf",
                        tmp_path / "v", "--imagesize", 64) == 0
    assert "data report: 1 images used" in capsys.readouterr().out


def _edit(root, name, change):
    path = os.path.join(root, name)
    data = json.load(open(path))
    change(data)
    json.dump(data, open(path, "w"))


def _rewrite(root, name, make):
    """Replace a BOP json by ``make(data)`` (a malformed file, as a broken exporter writes)."""
    path = os.path.join(root, name)
    data = make(json.load(open(path)))
    json.dump(data, open(path, "w"))


def test_a_folder_of_another_naming_is_said_to_train_as_negatives(nvisii, tmp_path, capsys):
    root = write_bop(nvisii, tmp_path / "bop")
    scan([root, str(nvisii)], "obj_000001", 64)
    assert "--data %s holds no 'obj_000001' object: its 4 frames train as negatives" % nvisii \
        in capsys.readouterr().err


def test_impossible_bop_poses_are_reported_and_skipped(nvisii, tmp_path):
    root = write_bop(nvisii, tmp_path / "bop")
    scene = "train_pbr/000000/scene_gt.json"

    def change(gt):
        gt["1"][0]["cam_t_m2c"][2] *= -1                                  # behind the camera
        gt["2"][0]["cam_R_m2c"] = [2 * v for v in gt["2"][0]["cam_R_m2c"]]   # not a rotation
    _edit(root, scene, change)
    samples, report = scan([root], "obj_000001", 64)
    assert len([s for s in samples if len(s.points)]) == 2
    bad = [l for l, k in zip(report.lines, report.kinds) if k == "bad pose"]
    assert len(bad) == 2 and "behind the camera" in bad[0] and "not a rotation" in bad[1]


@pytest.mark.parametrize("break_it, said", [
    (lambda root: _edit(root, "models/models_info.json", lambda m: m["1"].pop("size_x")),
     "object 1 needs min_x, min_y, min_z and positive size_x"),
    (lambda root: _edit(root, "train_pbr/000000/scene_gt_info.json",
                        lambda i: [e.update(visib_fract=0.0) for v in i.values() for e in v]),
     "no frame shows object 1"),
    (lambda root: os.remove(os.path.join(root, "models", "models_info.json")),
     "holds BOP scenes (SPLIT/SCENE/scene_gt.json) but no models/models_info.json"),
    (lambda root: _edit(root, "train_pbr/000000/scene_camera.json",
                        lambda c: c["0"].update(cam_K=[0] * 9)), "cam_K is not 9 finite numbers"),
    # Tracebacks before: the shape of each file is checked as it is read.
    (lambda root: _rewrite(root, "train_pbr/000000/scene_gt.json", lambda g: dict(g, x=g["0"])),
     "scene_gt.json: key 'x' is not an id"),
    (lambda root: _rewrite(root, "train_pbr/000000/scene_gt.json", lambda g: list(g.values())),
     "scene_gt.json: BOP writes an object keyed by ids here, not a list"),
    (lambda root: _rewrite(root, "train_pbr/000000/scene_gt_info.json", lambda g: list(g.values())),
     "scene_gt_info.json: BOP writes an object keyed by ids here, not a list"),
    (lambda root: _rewrite(root, "models/models_info.json", lambda m: list(m.values())),
     "models_info.json: BOP writes an object keyed by ids here, not a list"),
    (lambda root: _edit(root, "train_pbr/000000/scene_gt.json",
                        lambda g: g["0"][0].update(obj_id="one")), "obj_id 'one' is not a whole number"),
])
def test_a_broken_bop_set_is_one_line(nvisii, tmp_path, capsys, break_it, said):
    root = write_bop(nvisii, tmp_path / "bop")
    break_it(root)
    assert ih.local_cli("validate", "dope", "--data", root, "--object", "1", "--outf", tmp_path / "v",
                        "--imagesize", 64) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0]
    assert not (tmp_path / "v").exists()


def test_eval_scores_with_add_s_where_bop_marks_the_object_symmetric(nvisii, tmp_path, capsys):
    """ADD on a symmetric BOP object scores its equivalent poses as errors; BOP uses ADD-S, so
    eval does by default there, says why, and --add asks for ADD."""
    root = write_bop(nvisii, tmp_path / "bop")
    _edit(root, "models/models_info.json", lambda m: m["1"].update(
        symmetries_discrete=[[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]))
    weights = ih.write_weights(tmp_path / "w", object_name="obj_000001")
    args = ["eval", "dope", weights, "--data", root, "--outf", tmp_path / "e"]
    assert ih.local_cli(*args) == 0
    assert "obj_000001 is marked symmetric by" in capsys.readouterr().out
    assert json.load(open(tmp_path / "e" / "results.json"))["info"]["metric"] == "ADD-S"
    assert ih.local_cli(*args, "--add") == 0
    assert "marked symmetric" not in capsys.readouterr().out
    assert json.load(open(tmp_path / "e" / "results.json"))["info"]["metric"] == "ADD"
    assert ih.local_cli(*args, "--add", "--symmetric") == 2
    assert "pass one of them" in capsys.readouterr().err
