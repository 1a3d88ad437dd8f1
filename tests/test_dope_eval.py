"""eval dope: the metrics against poses whose errors are known exactly, and its outputs."""
import json
import os

import numpy as np
import pytest

import infer_helpers as ih
from pose_train_py27.cuboid import axis_angle_quat, cuboid_vertices, quat_multiply


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-frames")
    ih.synth_frames(folder, 8, seed=5)
    return str(folder)


def _truth(folder):
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            ann = json.load(open(os.path.join(folder, name)))
            cube = [o for o in ann["objects"] if o["class"] == "cube"][0]
            out.append((os.path.join(folder, name[:-5] + ".png"), cube))
    return out


def _detections(tmp_path, frames, change):
    """A detections.json holding the true poses, each passed through ``change(i, object)``."""
    records = []
    for i, (image, cube) in enumerate(_truth(frames)):
        obj = change(i, dict(cube))
        records.append({"image": image, "objects": [] if obj is None else [obj]})
    path = tmp_path / "detections.json"
    path.write_text(json.dumps({"frames": records, "settings": ih.SETTINGS}))
    return str(path)


def _eval(weights, frames, out, *extra):
    return ih.local_cli("eval", "dope", weights, "--data", frames, "--outf", out, *extra)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return ih.write_weights(tmp_path_factory.mktemp("eval-weights"))


def test_true_poses_score_perfectly(weights, frames, tmp_path):
    dets = _detections(tmp_path, frames, lambda i, o: o)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 0
    s = json.load(open(tmp_path / "out" / "results.json"))["summary"]
    assert s["objects"] == 8 and s["detection_rate"] == 1.0 and s["add_below_0.1d"] == 1.0
    assert s["add_auc_0_10cm"] == pytest.approx(1.0, abs=2e-3)
    assert s["median_reproj_px"] == pytest.approx(0, abs=1e-4) and s["median_rot_deg"] < 1e-3
    assert "| 8 | 8 (100.0%) | 100.0% |" in open(tmp_path / "out" / "results.md").read()


def test_misses_and_shifted_poses_give_the_expected_rates_and_auc(weights, frames, tmp_path):
    """A pure 2 cm shift has ADD = 2 cm exactly; a miss counts as a failure everywhere."""
    def change(i, o):
        if i == 0:
            return None
        if i % 2:
            o["location"] = list(np.add(o["location"], [0.02, 0.0, 0.0]))
        return o
    dets = _detections(tmp_path, frames, change)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets, "--worst", 3) == 0
    result = json.load(open(tmp_path / "out" / "results.json"))
    s = result["summary"]
    shifted = [r["add_m"] for r in result["objects"] if r["detected"]]
    assert sorted(np.round(shifted, 6)) == [0.0] * 3 + [0.02] * 4
    diameter = np.linalg.norm(ih.DIMS_CM) / 100.0             # 14.1 cm: 0.1 d = 1.4 cm
    assert s["diameter_m"] == pytest.approx(diameter)
    assert s["detection_rate"] == 7 / 8 and s["add_below_0.1d"] == 3 / 8
    assert s["add_auc_0_10cm"] == pytest.approx((3 * 1.0 + 4 * 0.8) / 8, abs=2e-3)
    worst = sorted(os.listdir(tmp_path / "out" / "worst"))
    assert len(worst) == 3 and worst[0].startswith("00_000000")   # the miss first


def _moved_in_the_image(o, fraction):
    """The object's 9 projected points moved sideways by ``fraction`` of its 2D size."""
    pts = np.asarray(o["projected_cuboid"], np.float64)
    size = np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))
    return dict(o, projected_cuboid=(pts + [fraction * size, 0.0]).tolist())


def test_a_pose_far_from_its_object_is_a_false_positive_not_a_detection(weights, frames, tmp_path):
    """Half the frames' detections sit half the object's size away from it: misses and false
    positives, not detections (counting them made a random network score 12-17%)."""
    def change(i, o):
        return _moved_in_the_image(o, 0.5 if i % 2 else 0.1)
    dets = _detections(tmp_path, frames, change)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 0
    result = json.load(open(tmp_path / "out" / "results.json"))
    s = result["summary"]
    assert s["detection_rate"] == 0.5 and s["false_positives"] == 4 and s["detected"] == 4
    assert [r["detected"] for r in result["objects"]] == [True, False] * 4
    assert "centroid lies within 0.2 x the object's 2D size" in s["match"]
    assert "false positive" in open(tmp_path / "out" / "results.md").read()


def test_add_s_forgives_a_symmetric_flip_and_a_mesh_gives_the_same_add(weights, frames, tmp_path):
    half_turn = axis_angle_quat([0, 0, 1], np.pi)
    dets = _detections(tmp_path, frames, lambda i, o: dict(
        o, quaternion_xyzw=list(quat_multiply(o["quaternion_xyzw"], half_turn))))
    assert _eval(weights, frames, tmp_path / "add", "--detections", dets) == 0
    assert _eval(weights, frames, tmp_path / "adds", "--detections", dets, "--symmetric") == 0
    add, adds = (json.load(open(tmp_path / d / "results.json"))["summary"] for d in ("add", "adds"))
    assert add["add_below_0.1d"] == 0.0 and adds["add_below_0.1d"] == 1.0
    obj = tmp_path / "cuboid.obj"
    corners = cuboid_vertices(np.array(ih.DIMS_CM) / 100.0)[:8]
    obj.write_text("".join("v %.9f %.9f %.9f\n" % tuple(v) for v in corners))
    assert _eval(weights, frames, tmp_path / "mesh", "--detections", dets, "--mesh", obj) == 0
    mesh = json.load(open(tmp_path / "mesh" / "results.json"))
    cuboid = json.load(open(tmp_path / "add" / "results.json"))
    assert [r["add_m"] for r in mesh["objects"]] == pytest.approx(
        [r["add_m"] for r in cuboid["objects"]])


def test_eval_runs_the_network_here(weights, frames, tmp_path, capsys):
    """Random weights find nothing: every object a miss, the outputs still complete."""
    assert _eval(weights, frames, tmp_path / "out", "--worst", 2) == 0
    result = json.load(open(tmp_path / "out" / "results.json"))
    assert result["summary"]["detection_rate"] == 0.0 and result["summary"]["objects"] == 8
    assert result["info"]["source"].startswith("this runtime")
    assert len(os.listdir(tmp_path / "out" / "worst")) == 2
    assert "eval dope: cube" in capsys.readouterr().out


def test_melodic_eval_needs_the_launcher_or_detections(weights, frames, tmp_path, capsys):
    assert _eval(weights, frames, tmp_path / "o", "--runtime", "melodic") == 2
    assert "runs infer dope in the legacy image first" in capsys.readouterr().err


def _relocated(path, root):
    """The detections.json as the launcher writes it: every frame under the container's mount."""
    record = json.load(open(path))
    for frame in record["frames"]:
        frame["image"] = root + frame["image"]
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def test_detections_written_through_the_launcher_match_by_path_ending(weights, frames, tmp_path):
    """A detections.json from the launcher records /host/... paths: eval --local on the host
    must still find every frame (it scored 0% with exit 0 before)."""
    dets = _relocated(_detections(tmp_path, frames, lambda i, o: o), "/host")
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 0
    s = json.load(open(tmp_path / "out" / "results.json"))["summary"]
    assert s["detection_rate"] == 1.0 and s["add_below_0.1d"] == 1.0


def test_detections_of_other_frames_are_refused(weights, frames, tmp_path, capsys):
    other = tmp_path / "other"
    ih.synth_frames(other, 3, seed=9)
    dets = str(tmp_path / "detections.json")
    with open(dets, "w") as f:
        json.dump({"frames": [{"image": str(other / ("x%d.png" % i)), "objects": []} for i in range(3)],
                   "settings": ih.SETTINGS}, f)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert dets in err and "none of its 3 frames" in err and "run infer dope on these frames" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_frames_missing_from_the_detections_are_named_and_count_as_missed(weights, frames, tmp_path, capsys):
    dets = _detections(tmp_path, frames, lambda i, o: o)
    record = json.load(open(dets))
    record["frames"] = record["frames"][2:]
    with open(dets, "w") as f:
        json.dump(record, f)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 0
    assert "2 of 8 frames have no record in" in capsys.readouterr().err
    assert json.load(open(tmp_path / "out" / "results.json"))["summary"]["detected"] == 6


def test_an_unreadable_annotation_is_named_and_refused_or_skipped_on_request(weights, frames, tmp_path, capsys):
    """eval dropped unreadable annotations and scored the rest with exit 0."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(frames, data)
    dets = _detections(tmp_path, str(data), lambda i, o: o)
    broken = sorted(data.glob("*.json"))[2]
    broken.write_text('{"objects": [')
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(broken) in err and "--skip_bad" in err
    assert not (tmp_path / "out").exists()
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets, "--skip_bad") == 0
    results = open(tmp_path / "out" / "results.md").read()
    assert "1 frame(s) skipped (--skip_bad), not scored:" in results and str(broken) in results
    assert json.load(open(tmp_path / "out" / "results.json"))["summary"]["objects"] == 7


@pytest.mark.parametrize("key,value", [("location", [float("nan"), 0.0, 0.5]),
                                       ("quaternion_xyzw", [0.0, 0.0, 0.0, 0.0]),
                                       ("quaternion_xyzw", [float("nan"), 0.0, 0.0, 1.0])])
def test_a_ground_truth_pose_that_cannot_be_scored_is_named(weights, frames, tmp_path, capsys, key, value):
    """NaN metrics with exit 0 before: the frame is named, and --skip_bad leaves it out."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(frames, data)
    dets = _detections(tmp_path, str(data), lambda i, o: o)
    path = sorted(data.glob("*.json"))[1]
    ann = json.loads(path.read_text())
    [cube for cube in ann["objects"] if cube["class"] == "cube"][0][key] = value
    path.write_text(json.dumps(ann))
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(path)[:-5] in err and key in err
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets, "--skip_bad") == 0
    summary = json.load(open(tmp_path / "out" / "results.json"))["summary"]
    assert summary["objects"] == 7 and summary["add_below_0.1d"] == 1.0


def test_a_mesh_without_vertices_is_refused_before_the_network(weights, frames, tmp_path, capsys):
    mesh = tmp_path / "empty.ply"
    mesh.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n")
    assert _eval(weights, frames, tmp_path / "out", "--mesh", mesh) == 2
    assert "empty.ply" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flags", [["--fx", "inf", "--fy", "500", "--cx", "160", "--cy", "120"],
                                   ["--fx", "500", "--fy", "500", "--cx", "nan", "--cy", "120"],
                                   ["--dimensions", "inf,2,3"]])
def test_non_finite_numbers_on_the_command_line_are_refused(weights, frames, tmp_path, capsys, flags):
    code = ih.local_cli("infer", "dope", weights, "--images", frames, "--outf", tmp_path / "out", *flags)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "finite" in err or "--dimensions takes" in err
    assert not list((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True


def test_one_eval_per_outf_and_a_failed_rerun_leaves_no_old_results(weights, frames, tmp_path, capsys):
    """Two evals into one --outf both said they succeeded; a failed rerun kept old results."""
    from pose_train_py27.dope_io import OutputClaim
    out = tmp_path / "out"
    assert _eval(weights, frames, out, "--detections", _detections(tmp_path, frames, lambda i, o: o)) == 0
    with OutputClaim(str(out)):
        assert _eval(weights, frames, out, "--detections", str(tmp_path / "detections.json")) == 2
    assert "is in use by another pose-train run" in capsys.readouterr().err
    assert (out / "results.json").exists() and (out / "results.md").exists() and (out / "worst").is_dir()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"frames": [{"image": "/x/elsewhere.png", "objects": []}],
                                 "settings": ih.SETTINGS}))
    assert _eval(weights, frames, out, "--detections", str(other)) == 2
    assert not (out / "results.json").exists() and not (out / "results.md").exists()
    assert not (out / "worst").exists()      # overlays of the last run outlived it


def test_an_object_whose_projected_cuboid_is_not_finite_is_named_not_dropped(weights, frames, tmp_path, capsys):
    """The frame disappeared from the score without a word (exit 0, 7 of 8 objects)."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(frames, data)
    dets = _detections(tmp_path, str(data), lambda i, o: o)
    path = sorted(data.glob("*.json"))[3]
    ann = json.loads(path.read_text())
    [cube for cube in ann["objects"] if cube["class"] == "cube"][0]["projected_cuboid"][2][0] = float("nan")
    path.write_text(json.dumps(ann))
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "1 frame(s) cannot be scored" in err and str(path)[:-5] in err and "--skip_bad" in err
    assert "keypoints are kept" not in err and "object skipped" not in err
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets, "--skip_bad") == 0
    results = open(tmp_path / "out" / "results.md").read()
    assert "1 frame(s) skipped (--skip_bad), not scored:" in results and str(path)[:-5] in results


def test_frames_are_counted_once_however_many_problems_they_have(weights, frames, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(frames, data)
    dets = _detections(tmp_path, str(data), lambda i, o: o)
    path = sorted(data.glob("*.json"))[0]
    ann = json.loads(path.read_text())
    cube = [cube for cube in ann["objects"] if cube["class"] == "cube"][0]
    cube["location"], cube["quaternion_xyzw"] = [float("nan")] * 3, [0, 0, 0, 0]
    path.write_text(json.dumps(ann))
    assert _eval(weights, str(data), tmp_path / "out", "--detections", dets) == 2
    assert "1 frame(s) cannot be scored" in capsys.readouterr().err


def test_a_corrupt_jpeg_is_refused_with_the_hint_and_skipped_with_skip_bad(weights, tmp_path, capsys):
    """--skip_bad refused it, and the refusal did not say --skip_bad would help."""
    data = tmp_path / "data"
    ih.synth_frames(data, 3, seed=6)
    jpg = ih.corrupt_jpeg(sorted(data.glob("*.png"))[1])
    assert _eval(weights, str(data), tmp_path / "out", "--dimensions", "10,10,10") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(jpg) in err and "damaged JPEG" in err and "--skip_bad" in err
    assert _eval(weights, str(data), tmp_path / "out", "--dimensions", "10,10,10", "--skip_bad") == 0
    results = json.load(open(tmp_path / "out" / "results.json"))
    assert results["info"]["frames"] == 2 and str(jpg) in results["info"]["skipped"][0]
    assert all(row["image"] != str(jpg) for row in results["objects"])


def test_a_file_that_is_not_weights_is_named_before_any_question_about_dimensions(frames, tmp_path, capsys):
    junk = tmp_path / "net.pth"
    junk.write_bytes(os.urandom(4096))
    assert _eval(str(junk), frames, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(junk) in err and "--dimensions" not in err and "DOPE weights" in err


def test_partial_poses_are_not_scored_as_the_robot_would_see_them_unless_asked(weights, frames, tmp_path):
    """Poses from 4-8 points counted as detections although DOPE's node never publishes them."""
    def change(i, o):
        if i < 3:
            o["partial"] = True
        return o
    dets = _detections(tmp_path, frames, change)
    assert _eval(weights, frames, tmp_path / "node", "--detections", dets) == 0
    s = json.load(open(tmp_path / "node" / "results.json"))["summary"]
    assert s["detected"] == 5 and s["with_partial"]["detected"] == 8
    assert "Posed from 4-8 points too (--partial): 8 detected (100.0%)" in open(
        tmp_path / "node" / "results.md").read()
    assert _eval(weights, frames, tmp_path / "all", "--detections", dets, "--partial") == 0
    results = json.load(open(tmp_path / "all" / "results.json"))
    s = results["summary"]
    assert s["detected"] == 8 and "with_partial" not in s and s["node_only"]["detected"] == 5
    assert sum(row["partial"] for row in results["objects"]) == 3
    assert "As the node: 5 detected (62.5%)" in open(tmp_path / "all" / "results.md").read()


def test_detections_of_another_class_are_refused(weights, frames, tmp_path, capsys):
    """Cube detections scored as 'distractor' detections: 100% detected, exit 0."""
    dets = _detections(tmp_path, frames, lambda i, o: o)
    record = json.load(open(dets))
    record["object"] = "cube"
    json.dump(record, open(dets, "w"))
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets, "--object", "distractor") == 2
    err = capsys.readouterr().err
    assert "holds 'cube' detections, not 'distractor'" in err and "trained on 'cube'" in err
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("key, value", [("location", [float("nan"), 0, 0.5]),
                                        ("quaternion_xyzw", [0, 0, 0, 0])])
def test_an_unusable_detected_pose_is_one_line_not_a_traceback(weights, frames, tmp_path, capsys, key, value):
    def change(i, o):
        if i == 2:
            o[key] = value
        return o
    dets = _detections(tmp_path, frames, change)
    assert _eval(weights, frames, tmp_path / "out", "--detections", dets) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert dets in err and key in err and "Traceback" not in err


def test_a_folder_given_twice_counts_once(weights, frames, tmp_path, capsys):
    """--data V --data link-to-V scored every object twice."""
    import os
    os.symlink(frames, str(tmp_path / "again"))
    dets = _detections(tmp_path, frames, lambda i, o: o)
    assert _eval(weights, frames, tmp_path / "out", "--data", str(tmp_path / "again"),
                 "--detections", dets) == 0
    assert json.load(open(tmp_path / "out" / "results.json"))["summary"]["objects"] == 8
    assert "8 of its 8 frames are already under another --data" in capsys.readouterr().err


def test_a_frame_whose_camera_is_not_finite_is_skipped_with_skip_bad(weights, tmp_path, capsys):
    data = tmp_path / "data"
    ih.synth_frames(data, 3, seed=6)
    path = sorted(data.glob("*.json"))[0]
    ann = json.loads(path.read_text())
    ann["camera_data"]["intrinsics"]["fx"] = float("nan")
    path.write_text(json.dumps(ann))
    assert _eval(weights, str(data), tmp_path / "out", "--dimensions", "10,10,10") == 2
    assert "--skip_bad" in capsys.readouterr().err
    assert _eval(weights, str(data), tmp_path / "out", "--dimensions", "10,10,10", "--skip_bad") == 0
    assert json.load(open(tmp_path / "out" / "results.json"))["info"]["frames"] == 2
