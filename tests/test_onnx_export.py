"""export onnx: the graph Isaac ROS DOPE binds, checked in onnxruntime against torch."""
import json
import shlex

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml

import infer_helpers as ih
from pose_train.compat import onnx_export
from pose_train_py27 import dope_decode
from pose_train_py27.nets import FastPose


@pytest.fixture(scope="module")
def dope_weights(tmp_path_factory):
    return ih.write_weights(tmp_path_factory.mktemp("onnx"))


def test_dope_graph_binds_as_isaac_ros_expects(dope_weights, tmp_path, capsys):
    out = tmp_path / "dope.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 96, "--width", 128,
                        "--out", out) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 25, 12, 16]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["normalization"] == "ros" and meta["mean"] == "[0.5, 0.5, 0.5]"
    assert meta["encoder"] == "isaac" and meta["encoder_mean"] == "[0.485, 0.456, 0.406]"
    report = json.load(open(str(out) + ".parity.json"))
    assert report["max_abs_diff"] <= 1e-4 and report["output_shape"] == [1, 25, 12, 16]
    assert report["adapter"] is True
    line = [l.strip() for l in capsys.readouterr().out.splitlines() if l.strip().startswith("ros2 launch")][0]
    words = dict(w.split(":=", 1) for w in shlex.split(line)[4:])
    assert shlex.split(line)[:4] == ["ros2", "launch", "isaac_ros_dope", "isaac_ros_dope_tensor_rt.launch.py"]
    assert words == {"model_file_path": str(out), "engine_file_path": str(tmp_path / "dope.plan"),
                     "object_name": "cube", "network_image_width": "128", "network_image_height": "96",
                     "encoder_image_mean": "[0.485, 0.456, 0.406]",
                     "encoder_image_stddev": "[0.229, 0.224, 0.225]",
                     "input_binding_names": '["input"]', "output_binding_names": '["output"]'}
    config = yaml.safe_load(open(tmp_path / "dope_config.yaml"))
    assert config == {"dope": {"ros__parameters": {"dimensions": {"cube": ih.DIMS_CM}}}}


def _frame_as(norm, seed=4):
    return onnx_export.preprocess(onnx_export.sample_frame(160, 128, seed=seed), norm)


ROS = {"mean": [0.5] * 3, "std": [0.5] * 3}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_a_ros_trained_network_under_isaac_ros_sees_what_it_trained_on(dope_weights, tmp_path):
    """Isaac ROS >= 3.2 feeds ImageNet statistics; these weights trained on (x - 0.5) / 0.5.
    The exported graph fed the encoder's input matches torch fed the trained input, and decodes
    to the same points; without the adapter the network reads another image."""
    out, plain = tmp_path / "d.onnx", tmp_path / "plain" / "d.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 128, "--width", 160,
                        "--out", out) == 0
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 128, "--width", 160,
                        "--encoder", "trained", "--out", plain) == 0
    graph, _ = onnx_export.load_network(dope_weights, "dope")
    with torch.no_grad():
        want = graph(_frame_as(ROS)).numpy()[0]
    got = onnxruntime.InferenceSession(str(out)).run(None, {"input": _frame_as(IMAGENET).numpy()})[0][0]
    assert np.abs(got - want).max() <= 1e-4
    unadapted = onnxruntime.InferenceSession(str(plain)).run(
        None, {"input": _frame_as(IMAGENET).numpy()})[0][0]
    assert np.abs(unadapted - want).max() > 100 * np.abs(got - want).max()
    K = np.array([[144.0, 0, 80], [0, 144.0, 64], [0, 0, 1]])
    # Random weights peak nowhere near the thresholds: every local maximum counts here.
    settings = dict(ih.SETTINGS, thresh_map=-1e9, thresh_points=-1e9)
    ours = dope_decode.detect(got[:9], got[9:], K, ih.DIMS_CM, settings)
    theirs = dope_decode.detect(want[:9], want[9:], K, ih.DIMS_CM, settings)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert np.allclose(a["points_found"][8], b["points_found"][8], atol=1e-3)


@pytest.mark.parametrize("encoder, norm, adapter", [("ros", ROS, False),
                                                    ("0.4,0.3", {"mean": [0.4] * 3, "std": [0.3] * 3}, True),
                                                    ("0.1,0.2,0.3,0.5,0.6,0.7",
                                                     {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7]}, True)])
def test_every_encoder_form_is_exact(dope_weights, tmp_path, encoder, norm, adapter):
    out = tmp_path / "d.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 64, "--width", 64,
                        "--encoder", encoder, "--out", out) == 0
    report = json.load(open(str(out) + ".parity.json"))
    assert report["adapter"] is adapter and report["encoder_mean"] == pytest.approx(norm["mean"])
    graph, _ = onnx_export.load_network(dope_weights, "dope")
    frame = onnx_export.sample_frame(64, 64, seed=9)
    with torch.no_grad():
        want = graph(onnx_export.preprocess(frame, ROS)).numpy()
    got = onnxruntime.InferenceSession(str(out)).run(
        None, {"input": onnx_export.preprocess(frame, norm).numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("encoder", ["isaac2", "0.5", "0.5,0", "a,b", "1,2,3,4,5", "", "127.5,127.5"])
def test_a_bad_encoder_is_one_line(dope_weights, tmp_path, capsys, encoder):
    assert ih.local_cli("export", "onnx", dope_weights, "--encoder", encoder, "--out",
                        tmp_path / "x.onnx") == 2
    assert "--encoder %r: give isaac, ros" % encoder in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_the_default_size_is_isaac_ros_s_1280x720(dope_weights, tmp_path):
    out = tmp_path / "d.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--out", out) == 0
    assert json.load(open(str(out) + ".parity.json"))["output_shape"] == [1, 25, 90, 160]


def test_dope_config_keeps_every_object_exported_into_the_folder(dope_weights, tmp_path, capsys):
    """Several networks deploy together; each export adds its object to the one config."""
    for name, dims in (("ketchup", "14.86,4.34,6.45"), ("mustard", "16,4.86,6.51"), ("ketchup", "15,4,6")):
        assert ih.local_cli("export", "onnx", dope_weights, "--height", 64, "--width", 64,
                            "--object", name, "--dimensions", dims, "--out", tmp_path / (name + ".onnx")) == 0
    config = yaml.safe_load(open(tmp_path / "dope_config.yaml"))["dope"]["ros__parameters"]
    assert config["dimensions"] == {"ketchup": [15.0, 4.0, 6.0], "mustard": [16.0, 4.86, 6.51]}
    (tmp_path / "dope_config.yaml").write_text("just: text\n")
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 64, "--width", 64,
                        "--out", tmp_path / "c.onnx") == 2
    assert "is not an Isaac ROS DOPE config" in capsys.readouterr().err
    assert not (tmp_path / "c.onnx").exists()
    assert (tmp_path / "dope_config.yaml").read_text() == "just: text\n"


def test_fastpose_graph_gives_quarter_resolution_heatmaps(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "best.pkl"
    torch.save(FastPose(num_classes=5, architecture="resnet50").state_dict(), str(path))
    out = tmp_path / "kp.onnx"
    assert ih.local_cli("export", "onnx", path, "--model", "keypoints", "--height", 64,
                        "--width", 64, "--out", out) == 0
    report = json.load(open(str(out) + ".parity.json"))
    assert report["output_shape"] == [1, 5, 16, 16] and report["max_abs_diff"] <= 1e-4


def test_the_wrong_network_is_one_line(dope_weights, tmp_path, capsys):
    assert ih.local_cli("export", "onnx", dope_weights, "--model", "keypoints", "--out",
                        tmp_path / "x.onnx") == 2
    err = capsys.readouterr().err
    assert "DOPE weights, not keypoints weights; pass --model dope" in err
    assert not (tmp_path / "x.onnx").exists()


def test_a_killed_exports_scratch_folder_is_removed_and_said(tmp_path, capsys):
    """A killed export left a hidden ~200 MB .export-XXXX/graph.onnx that nothing removed."""
    import os
    import tempfile
    from pose_train_py27.atomic import TEMP_SUFFIX, temp_prefix
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    out = tmp_path / "w" / "model.onnx"
    stale = tempfile.mkdtemp(prefix=temp_prefix(str(out)), suffix=TEMP_SUFFIX, dir=str(tmp_path / "w"))
    with open(os.path.join(stale, "graph.onnx"), "wb") as f:
        f.write(b"\0" * 1024)
    assert ih.local_cli("export", "onnx", weights, "--out", out, "--height", "64", "--width", "64") == 0
    assert not os.path.exists(stale) and out.exists()
    assert "removed 1 temp file(s) a killed save or export left in" in capsys.readouterr().out
    # Only the folder's lock stays (export claims it, as the trainers claim --outf).
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if p.name.startswith(".")) == [
        ".pose-train.lock"]


@pytest.mark.parametrize("name", ["self", "other.pth", ".onnx"])
def test_export_never_writes_over_the_weights_or_another_file(tmp_path, capsys, name):
    """--out W/copy.pth replaced the trained weights with ONNX bytes, exit 0."""
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    out = weights if name == "self" else str(tmp_path / "w" / name)
    if name != "self":   # ".onnx": a hidden file with no name, which nobody would find
        open(out, "wb").write(b"the user's")
    before = open(out, "rb").read()
    assert ih.local_cli("export", "onnx", weights, "--out", out, "--height", 64, "--width", 64) == 2
    assert "give a file name ending in .onnx" in capsys.readouterr().err
    assert open(out, "rb").read() == before


def test_weights_without_a_sidecar_are_said_to_be_taken_as_ros(tmp_path, capsys):
    """The adapter was built from a guess, stated as a fact, with no flag to correct it."""
    import os
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    os.remove(os.path.splitext(weights)[0] + ".json")
    assert ih.local_cli("export", "onnx", weights, "--height", 64, "--width", 64, "--out",
                        tmp_path / "a.onnx", "--dimensions", "10,8,6", "--object", "cube") == 0
    out = capsys.readouterr().out
    assert "has no sidecar naming its normalisation; taken as ros" in out
    assert json.load(open(str(tmp_path / "a.onnx") + ".parity.json"))["adapter"] is True
    assert ih.local_cli("export", "onnx", weights, "--height", 64, "--width", 64, "--out",
                        tmp_path / "b.onnx", "--normalize", "imagenet", "--object", "cube") == 0
    report = json.load(open(str(tmp_path / "b.onnx") + ".parity.json"))
    assert report["adapter"] is False and report["normalization"] == "imagenet"


def test_a_blank_object_name_is_refused_and_a_replaced_entry_is_said(dope_weights, tmp_path, capsys):
    assert ih.local_cli("export", "onnx", dope_weights, "--object", "  ", "--out", tmp_path / "x.onnx") == 2
    assert "give the object's name" in capsys.readouterr().err
    for dims in ("10,8,6", "12,8,6"):
        assert ih.local_cli("export", "onnx", dope_weights, "--height", 64, "--width", 64,
                            "--dimensions", dims, "--out", tmp_path / "c.onnx") == 0
    assert "it was [10.0, 8.0, 6.0] there before" in capsys.readouterr().out


def test_a_dynamic_graph_says_so_and_runs_at_another_size(dope_weights, tmp_path, capsys):
    """--dynamic printed and recorded a fixed 1x3x96x128 input."""
    out = tmp_path / "dyn.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 64, "--width", 64, "--dynamic",
                        "--out", out) == 0
    assert "input: Nx3xHxW (dynamic)" in capsys.readouterr().out
    assert "dynamic" in json.load(open(str(out) + ".parity.json"))["input"]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    result = session.run(None, {"input": np.zeros((2, 3, 96, 128), np.float32)})[0]
    assert result.shape == (2, 25, 12, 16)


def test_a_stopped_export_leaves_no_folder_it_made(dope_weights, tmp_path, monkeypatch):
    """SIGTERM (or any failure) during the export left --out's new folder behind, empty."""
    def stopped(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(onnx_export, "_export", stopped)
    out = tmp_path / "new" / "net.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--out", out, "--height", 64,
                        "--width", 64) == 130
    assert not (tmp_path / "new").exists()


def test_an_export_into_a_folder_another_run_is_writing_is_refused(dope_weights, tmp_path, capsys):
    """export onnx took no lock: two exports into one folder raced on dope_config.yaml."""
    from pose_train_py27.dope_io import OutputClaim
    (tmp_path / "deploy").mkdir()
    with OutputClaim(str(tmp_path / "deploy")):
        assert ih.local_cli("export", "onnx", dope_weights, "--out", tmp_path / "deploy" / "n.onnx",
                            "--height", 64, "--width", 64) == 2
    assert "is in use by another pose-train run" in capsys.readouterr().err
    assert not (tmp_path / "deploy" / "n.onnx").exists()
