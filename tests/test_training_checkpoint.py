"""pose_train.training.checkpoint_io / signals: atomic writes, state round trip, RNG, discovery."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pose_train.errors import UserError
from pose_train.training import checkpoint_io as ck
from pose_train.training.signals import GracefulStop, TimeLimit, continue_command


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_state_round_trip_is_plain_data_and_exact(tmp_path):
    model = _tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = ck.save_state(tmp_path / "training_state.pth", torch.nn.DataParallel(model), opt,
                         epoch=2, step=7, config={"lr": 0.01, "data": ["a"]},
                         extra={"normalization": {"mean": [0.5] * 3}})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    state = ck.load_state(path)          # weights_only=True inside: plain data only
    assert ck.is_state(state) and state["config"]["data"] == ["a"]
    assert not any(k.startswith("module.") for k in state["model"])
    model2 = _tiny()
    torch.nn.init.zeros_(model2[0].weight)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    assert ck.restore_state(state, model2, opt2) == (2, 7)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_weights_file_is_not_a_state(tmp_path):
    path = ck.atomic_save(_tiny().state_dict(), tmp_path / "w.pth")
    with pytest.raises(UserError, match="weights file"):
        ck.load_state(path)
    with pytest.raises(UserError, match="no such"):
        ck.load_file(tmp_path / "missing.pth")


def test_version_1_keypoint_states_load_in_todays_schema(tmp_path):
    """Version-1 keypoint states counted epochs from 0 and named the normalisation by string."""
    model = _tiny()
    path = ck.save_state(tmp_path / "training_state.pth", model, None, epoch=3, step=0, config={},
                         extra={"normalisation": "alphapose_mean", "best_acc": 0.5})
    old = torch.load(path, weights_only=True)
    old["version"] = 1
    ck.atomic_save(old, path)
    state = ck.load_state(path)
    assert (state["epoch"], state["version"]) == (4, ck.STATE_VERSION)
    assert state["extra"]["normalization"] == {"name": "alphapose_mean"}


def test_find_latest_state_skips_temp_files(tmp_path):
    assert ck.find_latest_state(tmp_path) is None
    ck.atomic_save({"x": 1}, tmp_path / "old_state.pth")
    time.sleep(0.02)
    ck.atomic_save({"x": 2}, tmp_path / "training_state.pth")
    (tmp_path / ".training_state.pth.abc.tmp").write_bytes(b"half")
    assert os.path.basename(ck.find_latest_state(tmp_path)) == "training_state.pth"


def test_states_are_not_pth_and_the_old_name_still_resumes(tmp_path):
    """DOPE's inference.py loads every .pth in a folder: the state must not be one; a run
    saved under the old name still resumes."""
    assert not ck.STATE_NAME.endswith(".pth")
    ck.atomic_save({"x": 1}, tmp_path / "training_state.pth")
    assert os.path.basename(ck.find_latest_state(tmp_path)) == "training_state.pth"
    time.sleep(0.02)
    ck.atomic_save({"x": 2}, tmp_path / ck.STATE_NAME)
    assert os.path.basename(ck.find_latest_state(tmp_path)) == ck.STATE_NAME


def test_atomic_save_survives_sigkill(tmp_path):
    """Kill a writer mid-save many times: the file on disk always loads completely."""
    target = tmp_path / "net.pth"
    script = textwrap.dedent("""
        import sys, torch
        from pose_train.training.checkpoint_io import atomic_save
        big = torch.arange(3_000_000, dtype=torch.float32)
        i = 0
        while True:
            atomic_save({"i": i, "t": big + i}, sys.argv[1]); i += 1
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout.readline()  # at least one full save before we start killing
        time.sleep(0.13)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    obj = torch.load(target, weights_only=True)
    assert obj["t"].numel() == 3_000_000 and float(obj["t"][0]) == obj["i"]


def test_graceful_stop_and_time_limit():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.reason == "SIGTERM"
    clock = iter([0.0, 10.0, 20.0, 3460.0]).__next__
    limit = TimeLimit(1.0, clock=clock)
    limit.tick()                                  # a 10 s step
    assert not limit.expired()
    assert limit.expired()                        # 140 s left <= 120 + 3*10 margin
    assert not TimeLimit(None).expired()


def test_continue_command():
    cmd = continue_command(["train", "dope", "--net", "a.pth", "--resume=x", "--outf", "o p"])
    assert cmd == "train dope --outf 'o p' --resume auto"


@pytest.mark.parametrize("head", [b"\x80\x02", b"\x80\x04\x95"])
def test_a_bad_pickle_never_gets_torchs_weights_only_false_advice(tmp_path, head, capsys):
    """That advice means 'run the file's code'; for bytes that are not weights it is wrong."""
    from pose_train.cli import main
    path = tmp_path / "w.pth"
    path.write_bytes(head + np.random.default_rng(0).bytes(3000))
    with pytest.raises(UserError) as err:
        ck.load_file(path)
    assert "not plain weights data" in str(err.value) and "weights_only" not in str(err.value)
    for argv in (["infer", "dope", str(path), "--images", str(tmp_path), "--dimensions", "1,2,3",
                  "--outf", str(tmp_path / "o")], ["export", "onnx", str(path)]):
        with pytest.raises(SystemExit) as code:
            main(["--local"] + argv)
        said = capsys.readouterr().err
        assert code.value.code == 2 and "not plain weights data" in said
        assert "weights_only" not in said and "Traceback" not in said
