"""The keypoint training benchmark runs (smallest sizes; the numbers themselves are not checked)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))


@pytest.mark.slow
def test_bench_keypoints_smoke(capsys):
    import bench_keypoints
    assert bench_keypoints.main(["--small", "--steps", "1", "--warmup", "1", "--workers", "0",
                                 "--frames", "4", "--batch", "2", "--recipe_batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "kp6d recipe" in out and "speed-up" in out
    assert bench_keypoints.main(["--small", "--data_only", "--steps", "1", "--warmup", "0",
                                 "--workers", "0", "--frames", "4"]) == 0
    assert "data only" in capsys.readouterr().out


@pytest.mark.slow
def test_learn_keypoints_smoke(tmp_path, capsys):
    """The learning check's whole chain runs: synth, prepare, train, PnP evaluation, JSON."""
    import json
    import learn_keypoints
    out = tmp_path / "learn.json"
    assert learn_keypoints.main(["--frames", "8", "--frame", "320x240", "--epochs", "1", "--kpnum", "8",
                                 "--input", "64x64", "--arch", "resnet50", "--batch", "2",
                                 "--workdir", str(tmp_path / "w"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_pck"] <= 1.0
    assert "ADD" in capsys.readouterr().out
