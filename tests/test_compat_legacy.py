"""The legacy side for real: Python 2.7 + torch 1.4 (POSE_TRAIN_LEGACY_PYTHON, else skipped).

The docker-marked tests drive the same tests/compat_helpers.check_* functions with a
``docker run ... python2.7`` prefix instead of a local interpreter.
"""
import pytest

import compat_helpers as h
import infer_helpers


@pytest.fixture(scope="module")
def legacy_python():
    return h.legacy_python_argv()


def test_py2_modules_byte_compile(legacy_python):
    h.check_byte_compile(legacy_python)


@pytest.mark.parametrize("check", h.CHECKS + infer_helpers.CHECKS,
                         ids=[c.__name__ for c in h.CHECKS + infer_helpers.CHECKS])
def test_compat_check_in_local_py27(check, legacy_python, tmp_path):
    check(legacy_python, str(tmp_path))


def test_convert_verify_local_uses_legacy_python_env(legacy_python, tmp_path, monkeypatch):
    import torch
    from pose_train_py27.nets import DopeNetwork
    monkeypatch.setenv("POSE_TRAIN_LEGACY_PYTHON", legacy_python[0])
    torch.manual_seed(0)
    torch.save(DopeNetwork(stages=2).state_dict(), str(tmp_path / "d.pth"))
    assert h.run_convert(tmp_path / "d.pth", tmp_path / "d_melodic.pth", verify=True) == 0
    broken = DopeNetwork(stages=2).state_dict()
    broken["extra.weight"] = torch.ones(1)
    torch.save(broken, str(tmp_path / "x.pth"))
    # keep_prefix skips the key check before writing; --verify's strict load still catches it
    from pose_train.errors import UserError
    with pytest.raises(UserError, match="strict load fails: 72 missing keys"):
        h.run_convert(tmp_path / "x.pth", tmp_path / "x_melodic.pth", verify=True,
                      model="dope", keep_prefix=True)
