"""Several objects, as DOPE's node runs them: one network per object over every frame.

infer dope and eval dope take several weights; node-config writes the node's whole config.
The networks here are the trainer's weights files (random, so they detect nothing) for what
the files and flags do, and, where a figure must be right, a stand-in for a perfectly
trained network: it outputs the true belief and affinity maps of its own class for each frame
(everything after the network, decode, PnP, the outputs and the scoring, is the real code).
"""
import glob
import json
import os
import re

import numpy as np
import pytest
import torch
import yaml

import infer_helpers as ih
from pose_train_py27 import dope_infer, dope_io, dope_networks


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two folders of 320x240 frames: one object class in each (plus distractors)."""
    from pose_train.dope.synth import write_dataset
    root = tmp_path_factory.mktemp("multi-frames")
    for seed, name in enumerate(("cube", "mug")):
        write_dataset(str(root / name), 3, seed=seed + 11, width=320, height=240, object_name=name,
                      progress=False)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi-weights")
    return [ih.write_weights(root / name, seed, name) for seed, name in enumerate(("cube", "mug"))]


class TrueMaps(torch.nn.Module):
    """A perfectly trained network of one class: for a frame it was shown (the nearest input),
    the true maps of that class's objects in it, at the size infer dope feeds."""

    def __init__(self, folders, object_class):
        super().__init__()
        self.known = []
        for json_path in sorted(p for f in folders for p in glob.glob(os.path.join(str(f), "*.json"))):
            beliefs, affinities, _, _, scale = ih.frame_maps(json_path, object_class=object_class)
            rgb = dope_io.decode_checked(json_path[:-5] + ".png")[:, :, ::-1]
            import cv2
            rgb = cv2.resize(np.ascontiguousarray(rgb), (int(scale * rgb.shape[1]), int(scale * rgb.shape[0])))
            x = dope_infer.to_network(rgb, {"mean": [0.5] * 3, "std": [0.5] * 3}, "cpu")
            self.known.append((x, torch.from_numpy(beliefs)[None], torch.from_numpy(affinities)[None]))

    def forward(self, x):
        k = min(range(len(self.known)), key=lambda i: float((self.known[i][0] - x).abs().mean())
                if self.known[i][0].shape == x.shape else np.inf)
        return [self.known[k][1]], [self.known[k][2]]


@pytest.fixture
def perfect(monkeypatch, frames):
    """The networks of the weights' sidecar classes, replaced by TrueMaps of those classes."""
    folders = [frames / "cube", frames / "mug"]

    def load(path, device):
        return TrueMaps(folders, json.load(open(os.path.splitext(path)[0] + ".json"))["object"])
    monkeypatch.setattr(dope_networks, "load_network", load)


def test_every_network_runs_over_every_frame_decoded_once(weights, frames, tmp_path, monkeypatch):
    decoded = []
    real = dope_io.decode_checked
    monkeypatch.setattr(dope_io, "decode_checked", lambda *a: decoded.append(a[0]) or real(*a))
    out = tmp_path / "infer"
    assert ih.local_cli("infer", "dope", *weights, "--images", frames / "cube", "--images",
                        frames / "mug", "--outf", out, "--belief_grid") == 0
    record = json.load(open(out / "detections.json"))
    assert [n["object"] for n in record["networks"]] == ["cube", "mug"]
    assert record["networks"][0]["color"] != record["networks"][1]["color"]
    assert "object" not in record and "weights" not in record   # no one object speaks for all
    assert len(record["frames"]) == 6 and len(decoded) == 6
    for frame in record["frames"]:
        assert [t["object"] for t in frame["per_network"]] == ["cube", "mug"]
        assert frame["network_ms"] == pytest.approx(sum(t["network_ms"] for t in frame["per_network"]))
        assert (out / (frame["name"] + ".png")).is_file()
        grid = dope_io.decode_checked(str(out / (frame["name"] + ".belief.png")))
        assert grid.shape[0] == 2 * 3 * 16 * 4   # two networks' 3x3 grids of 16-cell maps, x4


def test_each_object_is_found_by_its_own_network_and_named(weights, frames, tmp_path, perfect, capsys):
    out = tmp_path / "infer"
    assert ih.local_cli("infer", "dope", *weights, "--images", frames / "cube", "--images",
                        frames / "mug", "--outf", out) == 0
    assert "cube: 3 detection(s), 3 with a pose; mug: 3 detection(s), 3 with a pose" in capsys.readouterr().out
    names = {f["image"]: f["name"] for f in json.load(open(out / "detections.json"))["frames"]}
    assert len(set(names.values())) == 6   # both folders hold 000000.png: named apart
    for folder, name in ((frames / "cube", "cube"), (frames / "mug", "mug")):
        for truth_path in sorted(glob.glob(str(folder / "*.json"))):
            truth = [o for o in json.load(open(truth_path))["objects"] if o["class"] == name][0]
            frame = json.load(open(out / (names[truth_path[:-5] + ".png"] + ".json")))
            assert [o["class"] for o in frame["objects"]] == [name]
            found = frame["objects"][0]   # 16-row maps of a 240-row frame: 15 px cells
            error = np.linalg.norm(np.subtract(found["projected_cuboid"], truth["projected_cuboid"]), axis=1)
            assert error.mean() < 5.0 and np.linalg.norm(np.subtract(found["location"], truth["location"])) < 0.03


def test_eval_scores_each_object_against_its_own_class(weights, frames, tmp_path, perfect):
    data = ["--data", frames / "cube", "--data", frames / "mug"]
    assert ih.local_cli("eval", "dope", *weights, *data, "--outf", tmp_path / "eval") == 0
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert sorted(results["per_object"]) == ["cube", "mug"]
    for name in ("cube", "mug"):
        s = results["per_object"][name]
        assert s["objects"] == 3 and s["detection_rate"] == 1.0 and s["median_trans_mm"] < 30
        own = json.load(open(tmp_path / "eval" / name / "results.json"))
        assert own["info"]["object"] == name and own["summary"] == s
        assert all(row["image"].startswith(str(frames / name)) for row in own["objects"])
    total, per = results["summary"], results["per_object"]
    assert total["objects"] == 6 and total["detection_rate"] == 1.0 and total["false_positives"] == 0
    assert total["add_auc_0_10cm"] == pytest.approx((per["cube"]["add_auc_0_10cm"] + per["mug"]["add_auc_0_10cm"]) / 2)
    table = open(tmp_path / "eval" / "results.md").read()
    assert "| cube | 3 | 3 (100.0%) |" in table and "| all | 6 | 6 (100.0%) |" in table
    # The same poses through infer dope's detections.json: the same scores.
    assert ih.local_cli("infer", "dope", *weights, "--images", frames, "--outf", tmp_path / "infer") == 0
    assert ih.local_cli("eval", "dope", *weights, *data, "--outf", tmp_path / "again", "--detections",
                        tmp_path / "infer" / "detections.json") == 0
    again = json.load(open(tmp_path / "again" / "results.json"))
    assert again["per_object"] == results["per_object"]


def test_one_object_missed_shows_in_its_row_and_the_overall_one(weights, frames, tmp_path, monkeypatch):
    """Only the cube network is perfect; the mug one (random) finds nothing."""
    folders = [frames / "cube", frames / "mug"]
    real = dope_networks.load_network
    monkeypatch.setattr(dope_networks, "load_network", lambda path, device: TrueMaps(folders, "cube")
                        if "cube" in str(path) else real(path, device))
    assert ih.local_cli("eval", "dope", *weights, "--data", frames / "cube", "--data", frames / "mug",
                        "--outf", tmp_path / "eval") == 0
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert results["per_object"]["cube"]["detection_rate"] == 1.0
    assert results["per_object"]["mug"]["detected"] == 0
    assert results["summary"]["detection_rate"] == 0.5
    assert results["summary"]["add_below_0.1d"] == pytest.approx(results["per_object"]["cube"]["add_below_0.1d"] / 2)


def test_node_config_holds_every_key_the_node_reads(weights, tmp_path, capsys):
    out = tmp_path / "deploy" / "config_pose.yaml"
    assert ih.local_cli("node-config", *weights, "--out", out) == 0
    config = yaml.safe_load(open(out))
    for key in ("topic_camera", "topic_camera_info", "topic_publishing", "input_is_rectified",
                "downscale_height", "thresh_angle", "thresh_map", "sigma", "thresh_points"):
        assert key in config, key
    assert sorted(config["weights"]) == ["cube", "mug"]
    for name in config["weights"]:   # the node indexes each of these maps by the object's name
        assert len(config["dimensions"][name]) == 3 and len(config["draw_colors"][name]) == 3
        assert isinstance(config["class_ids"][name], int)
    assert config["dimensions"]["cube"] == ih.DIMS_CM
    assert len({tuple(c) for c in config["draw_colors"].values()}) == 2
    assert sorted(config["class_ids"].values()) == [1, 2]
    # Both files are net_epoch_01.pth: the config names them apart, and says how to copy them.
    assert config["weights"]["mug"] == "package://dope/weights/mug_net_epoch_01.pth"
    assert "dope/weights/mug_net_epoch_01.pth" in capsys.readouterr().out
    isaac = yaml.safe_load(open(tmp_path / "deploy" / "dope_config.yaml"))
    assert isaac["dope"]["ros__parameters"]["dimensions"] == {"cube": ih.DIMS_CM, "mug": ih.DIMS_CM}


def test_node_config_over_a_config_of_other_objects_is_refused(weights, tmp_path, capsys):
    """A second node-config with one of the weights replaced the file: the first object gone."""
    from pose_train_py27 import sidecar
    out = tmp_path / "c.yaml"
    assert ih.local_cli("node-config", weights[0], weights[1], "--out", out) == 0
    first = sidecar.read(weights[0])["object"]
    capsys.readouterr()
    assert ih.local_cli("node-config", weights[1], "--out", out) == 2
    err = capsys.readouterr().err
    assert "configures %s, which these weights do not" % first in err, err
    assert first in yaml.safe_load(open(out))["weights"]            # untouched
    assert ih.local_cli("node-config", weights[1], "--out", out, "--force") == 0
    assert first not in yaml.safe_load(open(out))["weights"]
    # A folder not made yet, written as one (trailing /): the config goes in it.
    assert ih.local_cli("node-config", weights[1], "--out", str(tmp_path / "deploy") + "/") == 0
    assert (tmp_path / "deploy" / "config_pose.yaml").exists()


def test_node_config_says_what_the_node_would_do_differently(weights, tmp_path, capsys):
    import shutil
    from pose_train_py27 import sidecar
    other = tmp_path / "big" / "net_epoch_01.pth"
    other.parent.mkdir()
    shutil.copy(weights[1], other)
    meta = sidecar.read(weights[1])
    sidecar.write(str(other), sidecar.dope_meta("mug", 400, "imagenet", 0.5, ih.DIMS_CM, [640, 480]))
    assert meta["decode"]["sigma"] != sidecar.read(str(other))["decode"]["sigma"]
    assert ih.local_cli("node-config", weights[0], other, "--out", tmp_path / "c.yaml") == 0
    err = capsys.readouterr().err
    assert "imagenet normalisation" in err
    # The first weights' object is named first: "the first's" is that one.
    first = sidecar.read(weights[0])["object"]
    assert re.search(r"%s \(the first\) decodes with sigma [\d.]+ and downscale_height \d+, mug "
                     r"with sigma 3.0 and downscale_height 400; the node applies the first's"
                     % first, err), err


@pytest.mark.parametrize("argv, said", [
    (lambda w: ["infer", "dope", w[0], w[0]], "is given twice"),
    (lambda w: ["infer", "dope", w[0], w[1], "--object", "a,a"], "both for 'a': one network per object; --object names it twice"),
    (lambda w: ["infer", "dope", w[0], w[1], "--object", "a"], "1 name(s) for 2 network(s)"),
    (lambda w: ["infer", "dope", w[0], w[1], "--object", ",mug"], "an empty name"),
    (lambda w: ["node-config", w[0], w[1], "--object", "../x,mug"], "ROS names"),
    (lambda w: ["infer", "dope", w[0], w[1], "--dimensions", "1,2,3"], "one cuboid for 2 networks"),
    (lambda w: ["eval", "dope", w[0], w[1], "--mesh", w[0]], "--mesh is one object's model"),
    (lambda w: ["node-config", w[0], w[1], "--out", "x.txt"], "ending in .yaml"),
])
def test_ambiguous_multi_object_requests_are_refused(weights, frames, tmp_path, capsys, argv, said):
    tail = {"infer": ["--images", frames / "cube", "--outf", tmp_path / "o"],
            "eval": ["--data", frames / "cube", "--outf", tmp_path / "o"], "node-config": []}
    args = argv(weights)
    assert ih.local_cli(*args, *tail[args[0]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
    assert len(err) == 1 and said in err[0]
    assert not (tmp_path / "o" / "detections.json").exists()


def test_names_given_with_object_rename_the_networks(weights, frames, tmp_path, capsys):
    assert ih.local_cli("infer", "dope", *weights, "--object", "box,cup", "--images",
                        frames / "cube", "--outf", tmp_path / "o") == 0
    record = json.load(open(tmp_path / "o" / "detections.json"))
    assert [n["object"] for n in record["networks"]] == ["box", "cup"]
    err = capsys.readouterr().err   # a swap (mug,cube) is said, as every rename is
    assert "trained on 'cube'; --object names it 'box'" in err and "names it 'cup'" in err


def test_converted_networks_make_a_config_the_melodic_node_loads(weights, tmp_path, capsys):
    """The README's chain: convert each network --to melodic, then node-config on the results."""
    import shutil
    melodic = []
    for w in weights:
        copy = tmp_path / os.path.basename(os.path.dirname(w)) / os.path.basename(w)
        copy.parent.mkdir()
        for path in (w, os.path.splitext(w)[0] + ".json"):
            shutil.copy(path, copy.parent)
        assert ih.local_cli("convert", copy, "--to", "melodic") == 0
        melodic.append(str(copy)[:-4] + "_melodic.pth")
    capsys.readouterr()
    assert ih.local_cli("node-config", *melodic, "--out", tmp_path / "config_pose.yaml") == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    config = yaml.safe_load(open(tmp_path / "config_pose.yaml"))
    assert config["weights"] == {"cube": "package://dope/weights/cube_net_epoch_01_melodic.pth",
                                 "mug": "package://dope/weights/mug_net_epoch_01_melodic.pth"}


def test_melodic_eval_of_several_networks_runs_infer_with_all_of_them(weights, frames, tmp_path):
    from pose_train.jobs import JOBS, namespace
    args = namespace("eval-dope", weights=weights, data=[str(frames / "cube")],
                     outf=str(tmp_path / "e"), runtime="melodic")
    job, values = JOBS["eval-dope"].first(args)
    assert job == "infer-dope" and values["weights"] == weights
    assert namespace(job, **values).weights == weights
    assert args.detections == os.path.join(str(tmp_path / "e"), "infer-melodic", "detections.json")


def test_one_object_scored_from_a_several_object_run_counts_only_its_class(weights, frames, tmp_path, monkeypatch, capsys):
    """Both stand-ins see cubes: each cube frame holds a 'cube' and a 'mug' detection on the
    same spot. Scoring cube must not take the mug one for a second cube (a false positive)."""
    folders = [frames / "cube", frames / "mug"]
    monkeypatch.setattr(dope_networks, "load_network", lambda path, device: TrueMaps(folders, "cube"))
    assert ih.local_cli("infer", "dope", *weights, "--images", frames / "cube", "--outf", tmp_path / "i") == 0
    dets = tmp_path / "i" / "detections.json"
    assert ih.local_cli("eval", "dope", weights[0], "--data", frames / "cube", "--outf", tmp_path / "e",
                        "--detections", dets) == 0
    s = json.load(open(tmp_path / "e" / "results.json"))["summary"]
    assert s["detected"] == 3 and s["false_positives"] == 0
    assert ih.local_cli("eval", "dope", weights[0], "--data", frames / "cube", "--outf", tmp_path / "x",
                        "--detections", dets, "--object", "distractor") == 2
    assert "holds 'cube' and 'mug' detections, not 'distractor'" in capsys.readouterr().err


def test_a_network_that_mistakes_other_objects_for_its_own_scores_false_positives(
        weights, frames, tmp_path, monkeypatch, capsys):
    """The mug network poses the cubes as mugs. On the frames without a mug, as the node runs
    it over every frame, those are false positives: they went uncounted (only frames holding
    the class were scored)."""
    folders = [frames / "cube", frames / "mug"]
    monkeypatch.setattr(dope_networks, "load_network", lambda path, device: TrueMaps(folders, "cube"))
    assert ih.local_cli("eval", "dope", *weights, "--data", frames / "cube", "--data", frames / "mug",
                        "--outf", tmp_path / "eval") == 0
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert results["per_object"]["mug"]["false_positives"] == 3
    assert results["per_object"]["cube"]["false_positives"] == 0
    mug = json.load(open(tmp_path / "eval" / "mug" / "results.json"))["info"]
    assert mug["frames"] == 6 and mug["negatives"] == 3
    assert "wrote %s" % (tmp_path / "eval" / "results.md") in capsys.readouterr().out


def test_a_multi_object_eval_leaves_no_results_for_a_later_single_one(weights, frames, tmp_path, perfect):
    out = tmp_path / "eval"
    data = ["--data", frames / "cube", "--data", frames / "mug"]
    assert ih.local_cli("eval", "dope", *weights, *data, "--outf", out) == 0
    assert (out / "mug" / "results.md").exists()
    assert ih.local_cli("eval", "dope", weights[0], *data, "--outf", out) == 0
    assert not (out / "mug").exists() and not (out / "cube").exists()
    assert json.load(open(out / "results.json"))["info"]["object"] == "cube"


def test_networks_trained_at_other_scales_are_said_by_infer(weights, frames, tmp_path, capsys):
    import shutil
    from pose_train_py27 import sidecar
    other = tmp_path / "big" / "net_epoch_01.pth"
    other.parent.mkdir()
    shutil.copy(weights[1], other)
    sidecar.write(str(other), sidecar.dope_meta("mug", 400, "ros", 0.5, ih.DIMS_CM, [640, 480]))
    assert ih.local_cli("infer", "dope", weights[0], other, "--images", frames / "cube", "--outf",
                        tmp_path / "o") == 0
    assert "(the first) decodes with sigma" in capsys.readouterr().err
