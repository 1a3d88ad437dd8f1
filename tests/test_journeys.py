"""The README's workflows, run as a user runs them: each command on the real output of the
one before, through the real CLI in this process (--local). Nothing pose-train produces is
written by hand here: the data comes from `synth`, the weights and sidecars from `train`.

The same chains through the launcher and the images are in test_docker_journeys.py.
"""
import json
import os

import pytest

import compat_helpers as h
import mesh_files
from infer_helpers import assert_same_detections, local_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_torch_threads")]
SMALL = ["--width", "160", "--height", "120", "--distance", "0.25,0.4"]



def run(*argv):
    code = local_cli(*argv)
    assert code == 0, (argv, code)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """synth dope -> train dope, as the README's first two commands."""
    root = tmp_path_factory.mktemp("dope-journey")
    run("synth", "dope", "--out", root / "data", "--n", "20", "--seed", "1", *SMALL)
    run("synth", "dope", "--out", root / "heldout", "--n", "3", "--seed", "2", *SMALL)
    run("train", "dope", "--data", root / "data", "--object", "cube", "--outf", root / "run",
        "--epochs", "1", "--imagesize", "64", "--batchsize", "4", "--workers", "0",
        "--pretrained", "none")
    return root


def test_dope_chain_in_process(trained):
    """validate -> infer -> eval -> export -> convert on the trainer's own files. Before the
    sidecar module, infer, eval and export crashed on the sidecar train dope writes."""
    root = trained
    best = root / "run" / "net_best.pth"
    assert best.exists() and (root / "run" / "net_best.json").exists()
    run("validate", "dope", "--data", root / "data", "--object", "cube", "--outf",
        root / "check", "--imagesize", "64")
    assert (root / "check" / "data_report.txt").exists()
    run("infer", "dope", best, "--images", root / "heldout", "--outf", root / "infer")
    detections = json.load(open(root / "infer" / "detections.json"))
    assert [f["name"] for f in detections["frames"]] == ["000000", "000001", "000002"]
    assert detections["normalization"] == "ros" and detections["settings"]["sigma"] == 0.48
    run("eval", "dope", best, "--data", root / "heldout", "--object", "cube", "--outf",
        root / "eval")
    assert json.load(open(root / "eval" / "results.json"))["summary"]["objects"] == 3
    run("export", "onnx", best, "--height", "64", "--width", "64", "--out", root / "dope.onnx")
    assert json.load(open(str(root / "dope.onnx") + ".parity.json"))["max_abs_diff"] <= 1e-4
    import yaml      # Isaac ROS's config: the trained object and its cuboid from the training data
    config = yaml.safe_load(open(root / "dope_config.yaml"))["dope"]["ros__parameters"]
    assert config["dimensions"] == {"cube": json.load(open(root / "run" / "net_best.json"))["dimensions_cm"]}
    run("convert", best, "--to", "melodic")
    melodic = root / "run" / "net_best_melodic.pth"
    side = json.load(open(root / "run" / "net_best_melodic.json"))
    assert side["normalization"]["name"] == "ros" and side["converted_from"] == "net_best.pth"
    assert (root / "run" / "net_best_melodic.yaml").exists() and melodic.exists()


def test_dope_chain_ends_in_the_legacy_runtime(trained):
    """convert --to melodic --verify, then infer dope in py2.7 + torch 1.4 on the converted
    weights: the same detections as the modern runtime on the trainer's weights."""
    python = h.legacy_python_argv()
    root = trained
    (root / "robot").mkdir(exist_ok=True)
    melodic = root / "robot" / "net_best_melodic.pth"
    run("convert", root / "run" / "net_best.pth", "--to", "melodic", "--verify", "--out", melodic)
    assert (root / "robot" / "net_best_melodic.json").exists()
    assert (root / "robot" / "net_best_melodic.pth.parity.pt").exists()
    h.run_legacy(python, ["-m", "pose_train_py27", "infer", "dope", str(melodic), "--images",
                          str(root / "heldout"), "--outf", str(root / "infer-melodic")])
    run("infer", "dope", root / "run" / "net_best.pth", "--images", root / "heldout", "--outf",
        root / "infer-modern")
    legacy, modern = (json.load(open(root / side / "detections.json"))
                      for side in ("infer-melodic", "infer-modern"))
    assert legacy["runtime"]["python"].startswith("2.7") and legacy["dimensions_cm"] == [10, 8, 6]
    assert legacy["settings"] == modern["settings"] and legacy["normalization"] == "ros"
    assert [f["name"] for f in legacy["frames"]] == [f["name"] for f in modern["frames"]]
    for a, b in zip(modern["frames"], legacy["frames"]):
        assert_same_detections(a["objects"], b["objects"])


def test_several_objects_chain(trained):
    """README "Several objects": a second object trained, both networks through infer and
    eval, each converted, node-config over the converted files, both in py2.7 + torch 1.4."""
    root = trained
    run("synth", "dope", "--out", root / "mug-data", "--n", "20", "--seed", "3", "--object", "mug", *SMALL)
    run("synth", "dope", "--out", root / "mug-heldout", "--n", "3", "--seed", "4", "--object", "mug", *SMALL)
    run("train", "dope", "--data", root / "mug-data", "--object", "mug", "--outf", root / "mug",
        "--epochs", "1", "--imagesize", "64", "--batchsize", "4", "--workers", "0", "--pretrained", "none")
    nets = [root / "run" / "net_best.pth", root / "mug" / "net_best.pth"]
    run("infer", "dope", *nets, "--images", root / "heldout", "--images", root / "mug-heldout",
        "--outf", root / "multi-infer")
    record = json.load(open(root / "multi-infer" / "detections.json"))
    assert [n["object"] for n in record["networks"]] == ["cube", "mug"] and len(record["frames"]) == 6
    run("eval", "dope", *nets, "--data", root / "heldout", "--data", root / "mug-heldout", "--outf",
        root / "multi-eval")
    per_object = json.load(open(root / "multi-eval" / "results.json"))["per_object"]
    assert per_object["cube"]["objects"] == per_object["mug"]["objects"] == 3
    for net in nets:
        run("convert", net, "--to", "melodic")
    melodic = [str(net)[:-4] + "_melodic.pth" for net in nets]
    run("node-config", *melodic, "--out", root / "deploy" / "config_pose.yaml")
    import yaml
    config = yaml.safe_load(open(root / "deploy" / "config_pose.yaml"))
    assert config["weights"] == {"cube": "package://dope/weights/cube_net_best_melodic.pth",
                                 "mug": "package://dope/weights/mug_net_best_melodic.pth"}
    h.run_legacy(h.legacy_python_argv(), ["-m", "pose_train_py27", "infer", "dope"] + melodic + [
        "--images", str(root / "heldout"), "--outf", str(root / "multi-melodic")])
    legacy = json.load(open(root / "multi-melodic" / "detections.json"))
    assert [n["object"] for n in legacy["networks"]] == ["cube", "mug"]
    assert legacy["runtime"]["torch"] == "1.4.0"


def test_own_object_chain(tmp_path):
    """README "Your own object": a mesh (OBJ + MTL + texture) -> synth dope --mesh -> validate
    -> train -> infer and eval on frames it never trained on -> node-config. The cuboid the
    node is told is the mesh's box, carried by the frames and the sidecar."""
    box = mesh_files.textured_box(str(tmp_path / "mesh"), (0.12, 0.06, 0.04), name="gadget")
    small = ["--width", "160", "--height", "120", "--workers", "1"]
    run("synth", "dope", "--mesh", box, "--out", tmp_path / "data", "--n", "20", *small)
    run("synth", "dope", "--mesh", box, "--out", tmp_path / "heldout", "--n", "3", "--seed", "7",
        *small)
    run("validate", "dope", "--data", tmp_path / "data", "--object", "gadget", "--outf",
        tmp_path / "check", "--imagesize", "64")
    report = json.load(open(tmp_path / "check" / "data_report.json"))
    assert "nvisii" in json.dumps(report)
    run("train", "dope", "--data", tmp_path / "data", "--object", "gadget", "--outf",
        tmp_path / "run", "--epochs", "1", "--imagesize", "64", "--batchsize", "4", "--workers",
        "0", "--pretrained", "none")
    best = tmp_path / "run" / "net_best.pth"
    assert json.load(open(tmp_path / "run" / "net_best.json"))["dimensions_cm"] == [12, 6, 4]
    run("infer", "dope", best, "--images", tmp_path / "heldout", "--outf", tmp_path / "infer")
    assert len(json.load(open(tmp_path / "infer" / "detections.json"))["frames"]) == 3
    run("eval", "dope", best, "--data", tmp_path / "heldout", "--object", "gadget", "--outf",
        tmp_path / "eval")
    assert json.load(open(tmp_path / "eval" / "results.json"))["summary"]["objects"] == 3
    run("node-config", best, "--out", tmp_path / "deploy" / "config_pose.yaml")
    import yaml
    config = yaml.safe_load(open(tmp_path / "deploy" / "config_pose.yaml"))
    assert config["dimensions"] == {"gadget": [12.0, 6.0, 4.0]}


def test_keypoint_chain_in_process(tmp_path):
    """synth linemod -> prepare -> train -> eval -> convert, each on the last one's output."""
    run("synth", "linemod", "--out", tmp_path / "lm", "--n", "8", "--width", "160",
        "--height", "120")
    run("prepare", "keypoints", "--seq", "01", "--kptype", "fps", "--kpnum", "8", "--data",
        tmp_path / "lm", "--outf", tmp_path / "kp")
    run("train", "keypoints", "--seq", "1", "--kptype", "fps", "--data", tmp_path / "kp",
        "--outf", tmp_path / "run", "--epochs", "1", "--trainBatch", "2", "--arch", "resnet50",
        "--inputResH", "64", "--inputResW", "64", "--pretrained", "none")
    best = tmp_path / "run" / "best.pkl"
    assert json.load(open(tmp_path / "run" / "best.json"))["sidecar_version"] == 2
    run("eval", "keypoints", best, "--seq", "1", "--kptype", "fps", "--data", tmp_path / "kp",
        "--outf", tmp_path / "eval")
    assert (tmp_path / "eval" / "results.md").read_text().count("| 01 | fps | 8 |") == 1
    run("convert", best, "--to", "melodic", "--model", "keypoints")
    side = json.load(open(tmp_path / "run" / "best_melodic.json"))
    assert side["input_hw"] == [64, 64] and side["normalization"]["name"] == "alphapose"
    assert os.path.isfile(tmp_path / "run" / "best_melodic.pth")
