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
