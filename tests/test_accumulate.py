"""Gradient accumulation (--accumulate K): one process that takes K batches per optimizer step
trains the weights K processes train (the same global batch, the same shards, the same
augmentation), in both trainers, and resumes mid-epoch exactly. tests/test_nodes.py and
tests/test_docker_nodes.py close the triangle with two nodes."""
import os
import subprocess
import sys

import pytest
import torch

from keypoints_helpers import TinyNet, make_sequence, run_prepare, tiny_process, train_args
from pose_train.cli import main as cli_main
from pose_train.dope.synth import write_dataset
from pose_train.errors import UserError
from pose_train.keypoints import model as kpmodel, train as kptrain
from pose_train.training.distributed import spawn_local
from pose_train.training.metrics_log import read_metrics

# One thread in every process: a process then computes each batch as a rank of two does here,
# and the weights agree bit for bit. With other thread counts the kernels round differently
# (1e-8 after an epoch), which Adam grows on near-zero gradients (6e-4 after 16 steps of 1).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOPE = ["--object", "cube", "--epochs", "2", "--batchsize", "2", "--workers", "0",
        "--imagesize", "32", "--val", "off", "--pretrained", "none"]


def _largest_difference(a, b, keys=None):
    keys = [k for k in a if keys is None or keys(k)]
    assert keys and set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def dope_runs(tmp_path_factory):
    """Two epochs of 3 steps on 12 frames: two processes, one accumulating two batches, one
    plain."""
    root = tmp_path_factory.mktemp("accumulate")
    data = root / "data"
    write_dataset(str(data), 12, seed=2, width=64, height=48, progress=False)
    base = ["train", "dope", "--data", str(data)] + DOPE
    two = subprocess.run([sys.executable, "-m", "pose_train", "--local"] + base
                         + ["--outf", str(root / "two"), "--gpus", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    cli_main(base + ["--outf", str(root / "accumulated"), "--accumulate", "2", "--local"])
    cli_main(base + ["--outf", str(root / "plain"), "--local"])
    return root, data


def test_dope_one_process_accumulating_two_batches_trains_what_two_processes_train(dope_runs, capsys):
    root, _ = dope_runs
    two, accumulated = (_load(root / run / "net_epoch_02.pth") for run in ("two", "accumulated"))
    assert _largest_difference(two, accumulated) <= 1e-7     # 0.0 measured: bit for bit
    # The comparison can tell: one process without accumulation takes other steps.
    assert _largest_difference(two, _load(root / "plain" / "net_epoch_02.pth")) > 1e-4
    steps = [[r for r in read_metrics(root / run / "metrics.jsonl") if r["kind"] == "step"]
             for run in ("two", "accumulated")]
    assert [r["step"] for r in steps[1]] == [1, 2, 3, 1, 2, 3]    # 12 frames / (2 x 2) a step
    # The loss shown is the step's over every batch, whichever way they were spread.
    assert [r["loss"] for r in steps[0]] == pytest.approx([r["loss"] for r in steps[1]], rel=1e-6)


def test_dope_accumulating_run_resumes_mid_epoch_exactly(dope_runs, tmp_path, capsys):
    root, data = dope_runs
    run = ["train", "dope", "--data", str(data), "--outf", str(tmp_path)] + DOPE + [
        "--accumulate", "2", "--local"]
    cli_main(run + ["--time_limit", "0.0001"])
    out = capsys.readouterr().out
    assert "stopped by time limit at epoch 1 step 1" in out and "--accumulate 2" in out
    assert "--node_rank" not in out
    assert "x 2 accumulated" in out
    # The step it stopped at counts batches of 2 x 2: other sizes would start at other images.
    other = run[:run.index("--accumulate")] + ["--local"]
    with pytest.raises(SystemExit):
        cli_main(other + ["--resume", "auto"])
    assert ("stopped mid-epoch (epoch 1 step 1) with --accumulate 2; resume it with --accumulate 2"
            in capsys.readouterr().err.strip().splitlines()[-1])
    cli_main(run + ["--resume", "auto"])
    a, b = _load(tmp_path / "net_epoch_02.pth"), _load(root / "accumulated" / "net_epoch_02.pth")
    assert _largest_difference(a, b) <= 1e-7     # 0.0 measured


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("kp")
    data = make_sequence(root / "lm", n=12, seed=2)
    return os.path.dirname(run_prepare(data, root / "prep", kptype="corner", kpnum=9))


def test_keypoints_one_process_accumulating_two_batches_trains_what_two_processes_train(
        prepared, tmp_path, monkeypatch, capsys):
    settings = dict(kptype="corner", epochs=2, trainBatch=4)
    spawn_local(tiny_process, 2, train_args(prepared, tmp_path / "two", gpus=2, **settings))
    monkeypatch.setattr(kpmodel, "build", lambda k, arch: TinyNet(k, arch))
    kptrain.run_process(train_args(prepared, tmp_path / "accumulated", accumulate=2, **settings))
    assert "--trainBatch 4 a step over 1 process(es) x 2 accumulated batches" in capsys.readouterr().out
    kptrain.run_process(train_args(prepared, tmp_path / "plain", **settings))
    two, accumulated, plain = (_load(tmp_path / run / "final.pkl")
                               for run in ("two", "accumulated", "plain"))
    # Batch norm's running statistics are not compared: under DDP they follow rank 0's batches
    # only (its buffers are broadcast every step), here every batch's. Training uses each
    # batch's own statistics, so the parameters do not depend on them.
    def trained(key):
        return "running_" not in key and "num_batches" not in key
    assert _largest_difference(two, accumulated, keys=trained) <= 1e-7     # 0.0 measured
    losses = [[r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl")]
              for run in ("two", "accumulated")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6) and len(losses[0]) == 2
    # The comparison can tell: one batch of 4 normalises over 4 frames, not 2 and 2.
    assert _largest_difference(two, plain, keys=trained) > 1e-4             # 6.5e-3 measured


def test_keypoints_batch_must_split_over_processes_and_accumulated_batches(prepared, tmp_path):
    with pytest.raises(UserError, match=r"--trainBatch 6 is split over 1 process x "
                                        r"--accumulate 4; make it a multiple of 4"):
        kptrain.main(train_args(prepared, tmp_path, kptype="corner", trainBatch=6, accumulate=4,
                                gpus=0))
