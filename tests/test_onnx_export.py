"""export onnx: the graph Isaac ROS DOPE binds, checked in onnxruntime against torch."""
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

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
    report = json.load(open(str(out) + ".parity.json"))
    assert report["max_abs_diff"] <= 1e-4 and report["output_shape"] == [1, 25, 12, 16]
    text = capsys.readouterr().out
    assert "network_image_width:=128 network_image_height:=96" in text
    assert "encoder_image_mean:=[0.5, 0.5, 0.5]" in text


def test_the_onnx_maps_decode_like_the_torch_ones(dope_weights, tmp_path):
    out = tmp_path / "d.onnx"
    assert ih.local_cli("export", "onnx", dope_weights, "--height", 128, "--width", 160,
                        "--out", out) == 0
    graph, _ = onnx_export.load_network(dope_weights, "dope")
    x = onnx_export.preprocess(onnx_export.sample_frame(160, 128, seed=4), {"mean": [0.5] * 3,
                                                                           "std": [0.5] * 3})
    got = onnxruntime.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0][0]
    with torch.no_grad():
        want = graph(x).numpy()[0]
    assert np.abs(got - want).max() <= 1e-4
    K = np.array([[144.0, 0, 80], [0, 144.0, 64], [0, 0, 1]])
    # Random weights peak nowhere near the thresholds: every local maximum counts here.
    settings = dict(ih.SETTINGS, thresh_map=-1e9, thresh_points=-1e9)
    ours = dope_decode.detect(got[:9], got[9:], K, ih.DIMS_CM, settings)
    theirs = dope_decode.detect(want[:9], want[9:], K, ih.DIMS_CM, settings)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert np.allclose(a["points_found"][8], b["points_found"][8], atol=1e-3)


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
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if p.name.startswith(".")) == []
