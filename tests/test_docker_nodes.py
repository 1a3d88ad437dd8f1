"""Two containers of the modern CPU image as two nodes (compose.two-nodes.yaml: one Docker
engine, the project's own network, gloo, one shared output folder): SIGTERM to node 1 mid-run
stops both at one step with one state, both resume to the weights of an uninterrupted run of
one process accumulating two batches a step (the same global batch), and a node whose
rendezvous never comes fails in one line."""
import os
import subprocess
import sys
import time

import pytest
import torch

from nodes_helpers import step_logged

from pose_train.dope.synth import write_dataset
from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = images.REPO
TRAIN = ("--data /data/set --object cube --epochs 4 --batchsize 1 --workers 0 --imagesize 32 "
         "--val off --pretrained none")


def _compose(env, *args, timeout=180):
    return subprocess.run(["docker", "compose", "-f", "compose.two-nodes.yaml"] + list(args),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _exit_codes(env):
    ps = _compose(env, "ps", "-a", "--format", "{{.Service}} {{.ExitCode}}").stdout.split()
    return dict(zip(ps[0::2], ps[1::2]))


def test_two_containers_as_two_nodes_stop_together_and_resume(modern_image, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(str(data / "set"), 8, seed=2, width=64, height=48, progress=False)
    out.mkdir()
    env = dict(os.environ, POSE_TRAIN_OUTPUT=str(out), POSE_TRAIN_DATA=str(data),
               POSE_TRAIN_MODERN_IMAGE=modern_image, TRAIN_ARGS=TRAIN)
    try:
        up = subprocess.Popen(["docker", "compose", "-f", "compose.two-nodes.yaml", "up"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        assert step_logged(out, timeout=120)
        started = time.time()
        assert _compose(env, "kill", "-s", "SIGTERM", "node-1").returncode == 0
        log = up.communicate(timeout=120)[0]
        assert time.time() - started < 60, log
        assert _exit_codes(env) == {"node-0": "0", "node-1": "0"}, log
        assert "SIGTERM passed to its 1 process(es)" in log and "state saved in" in log
        assert (out / "training_state.pt").exists() and not (out / "net_epoch_04.pth").exists()
        env["TRAIN_ARGS"] = TRAIN + " --resume auto"
        resumed = _compose(env, "up", timeout=300)
        assert _exit_codes(env) == {"node-0": "0", "node-1": "0"}, resumed.stdout[-3000:]
    finally:
        _compose(env, "down", "--remove-orphans")
    # The threads each container's process has (training.distributed.share_cores: the cores
    # over the 2 processes): the same kernels, the same rounding, so the weights agree bit for bit.
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    whole = subprocess.run(
        [sys.executable, "-m", "pose_train", "--local", "train", "dope", "--outf",
         str(tmp_path / "whole"), "--accumulate", "2"] + TRAIN.replace("/data", str(data)).split(),
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS=threads))
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = torch.load(out / "net_epoch_04.pth", map_location="cpu")
    b = torch.load(tmp_path / "whole" / "net_epoch_04.pth", map_location="cpu")
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) <= 1e-7


def test_a_node_whose_rendezvous_never_comes_fails_in_one_line(modern_image, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(str(data / "set"), 2, seed=2, width=64, height=48, progress=False)
    out.mkdir()
    env = dict(os.environ, POSE_TRAIN_OUTPUT=str(out), POSE_TRAIN_DATA=str(data),
               POSE_TRAIN_MODERN_IMAGE=modern_image, TRAIN_ARGS=TRAIN + " --rdzv_timeout 6")
    started = time.time()
    try:
        alone = _compose(env, "run", "--rm", "node-1", timeout=120)
    finally:
        _compose(env, "down", "--remove-orphans")
    assert alone.returncode == 2, alone.stdout[-2000:] + alone.stderr[-2000:]
    last = (alone.stdout + alone.stderr).strip().splitlines()[-1]
    assert "no rendezvous at node-0:29400 within 6 s" in last and "--node_rank 0" in last
    assert time.time() - started < 60
