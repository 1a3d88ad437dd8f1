"""The compat checks of test_compat_legacy.py, run in the real legacy image, and the
user's path end to end: `pose-train convert --to melodic --verify` across both images."""
import os
import subprocess
import sys

import pytest

import compat_helpers as h
import infer_helpers

pytestmark = [pytest.mark.docker, pytest.mark.legacy, pytest.mark.slow]


def test_py2_modules_byte_compile_in_image(legacy_image, tmp_path):
    h.check_byte_compile(h.docker_python_argv(legacy_image, str(tmp_path)))


@pytest.mark.parametrize("check", h.CHECKS + infer_helpers.CHECKS,
                         ids=[c.__name__ for c in h.CHECKS + infer_helpers.CHECKS])
def test_compat_check_in_legacy_image(check, legacy_image, tmp_path):
    check(h.docker_python_argv(legacy_image, str(tmp_path)), str(tmp_path))


def test_convert_verify_through_both_images(modern_image, legacy_image, tmp_path):
    import torch
    from pose_train_py27.nets import DopeNetwork
    torch.manual_seed(0)
    src = tmp_path / "net_epoch_03.pth"
    torch.save(torch.nn.DataParallel(DopeNetwork()).state_dict(), src)  # zipfile: torch 1.4 can't read it
    result = subprocess.run([sys.executable, "-m", "pose_train", "convert", str(src), "--to", "melodic",
                             "--verify"], capture_output=True, text=True, timeout=600, cwd=h.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "net_epoch_03_melodic.pth"
    assert out.exists() and (tmp_path / "net_epoch_03_melodic.pth.parity.pt").exists()
    assert "torch 1.4" in result.stdout
    assert all(p.stat().st_uid == os.getuid() for p in tmp_path.iterdir())


def _pose_train(*args):
    result = subprocess.run([sys.executable, "-m", "pose_train"] + [str(a) for a in args],
                            capture_output=True, text=True, timeout=900, cwd=h.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_infer_and_eval_through_the_launcher_in_both_images(modern_image, legacy_image, tmp_path):
    """The user's path: infer dope in the modern image and with --runtime melodic; eval dope
    --runtime melodic scores the legacy image's poses."""
    import json
    weights = infer_helpers.write_weights(tmp_path)
    frames = tmp_path / "frames"
    infer_helpers.synth_frames(frames, 3)
    _pose_train("infer", "dope", weights, "--images", frames, "--outf", tmp_path / "modern")
    _pose_train("infer", "dope", weights, "--images", frames, "--outf", tmp_path / "melodic",
                "--runtime", "melodic")
    mine, legacy = (json.load(open(tmp_path / side / "detections.json"))
                    for side in ("modern", "melodic"))
    assert mine["runtime"]["python"].startswith("3.") and legacy["runtime"]["torch"] == "1.4.0"
    assert legacy["runtime"]["opencv"].startswith("4.1.")
    assert [f["network_input"] for f in legacy["frames"]] == [[170, 128]] * 3
    for a, b in zip(mine["frames"], legacy["frames"]):
        infer_helpers.assert_same_detections(a["objects"], b["objects"])
    _pose_train("eval", "dope", weights, "--data", frames, "--outf", tmp_path / "eval",
                "--runtime", "melodic", "--worst", 1)
    result = json.load(open(tmp_path / "eval" / "results.json"))
    assert result["summary"]["objects"] == 3
    assert result["info"]["source"].endswith("infer-melodic/detections.json")
    ran = json.load(open(tmp_path / "eval" / "infer-melodic" / "detections.json"))
    assert ran["runtime"]["python"].startswith("2.7")
    owned = [p for p in (tmp_path / "eval").rglob("*") if p.is_file()]
    assert owned and all(p.stat().st_uid == os.getuid() for p in owned)
