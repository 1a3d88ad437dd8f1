"""Several machines: train dope under torchrun's elastic launch (c10d rendezvous), two local
processes standing in as two nodes (the same code path; tests/test_docker_nodes.py runs them
as two containers)."""
import os
import re
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from nodes_helpers import step_logged

from pose_train.dope.synth import write_dataset
from pose_train.errors import UserError
from pose_train.launcher.run import container_spec, docker_run_command
from pose_train.jobs import JOBS, command_words
from pose_train.training import nodes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--object", "cube", "--epochs", "1", "--batchsize", "1", "--workers", "0",
        "--imagesize", "32", "--val", "off", "--pretrained", "none"]


def _args(**given):
    values = dict(nnodes=None, node_rank=0, rdzv=None, nproc_per_node=None, rdzv_timeout=300.0)
    values.update(given)
    return SimpleNamespace(**values)


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*argv):
    return subprocess.Popen([sys.executable, "-m", "pose_train", "--local"] + [str(a) for a in argv],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _weights(path):
    return torch.load(path, map_location="cpu")


def test_torchrun_arguments_and_checks():
    argv = nodes.torchrun_argv(_args(nnodes=2, node_rank=1, rdzv="10.0.0.1:29500",
                                     rdzv_timeout=30), 4)
    assert argv[argv.index("--rdzv_backend") + 1] == "c10d"
    assert argv[argv.index("--rdzv_endpoint") + 1] == "10.0.0.1:29500"
    assert argv[argv.index("--nproc_per_node") + 1] == "4"
    assert argv[argv.index("--rdzv_conf") + 1] == "join_timeout=30,read_timeout=15,is_host=false"
    assert argv[-2:] == ["-m", "pose_train"]
    assert nodes.endpoint("[::1]:29400") == ("::1", 29400)
    for bad, words in ((dict(nnodes=2), "needs --rdzv"),
                       (dict(rdzv="h:1"), "--rdzv is for several machines"),
                       (dict(nnodes=2, rdzv="node0"), "--rdzv takes HOST:PORT"),
                       (dict(nnodes=2, rdzv=":29400"), "--rdzv takes HOST:PORT"),
                       (dict(nnodes=2, node_rank=2, rdzv="h:1"), "--node_rank 2 is not one of 0..1"),
                       (dict(nnodes=2, rdzv="h:99999"), "--rdzv takes HOST:PORT")):
        with pytest.raises(UserError, match=words):
            nodes.check(_args(**bad))
    worker = command_words(JOBS["train-dope"], _args(nnodes=2, rdzv="h:1", data=["/d"]))
    assert worker[:2] == ["train", "dope"] and "--nnodes=2" in worker and "--data=/d" in worker


def test_compose_environment_and_the_agreement_between_nodes():
    args = _args(nnodes=None, node_rank=None)
    nodes.from_environment(args, {"NNODES": "3", "NODE_RANK": "2", "RDZV": "n0:1"})
    assert (args.nnodes, args.node_rank, args.rdzv) == (3, 2, "n0:1")
    given = _args(nnodes=None, node_rank=0)      # a flag given wins over the environment
    nodes.from_environment(given, {"NODE_RANK": "1"})
    assert given.node_rank == 0
    with pytest.raises(UserError, match="NODE_RANK='x' is not a whole number"):
        nodes.from_environment(_args(node_rank=None), {"NODE_RANK": "x"})
    # --node_rank 1 on one machine trained as if it were one of several; NODE_RANK exported
    # for another tool on one machine is node 0.
    with pytest.raises(UserError, match="--node_rank 1 is for several machines"):
        nodes.from_environment(_args(nnodes=1, node_rank=1), {})
    alone = _args(nnodes=None, node_rank=None)
    nodes.from_environment(alone, {"NODE_RANK": "1"})
    assert alone.node_rank == 0

    def worker(node, local, procs=1, **command):
        return {"node": node, "local": local, "procs": procs, "command": dict(epochs=2, **command)}
    nodes._refuse_disagreement([worker(0, 0), worker(1, 0)], 2)
    for everyone, words in (
            ([worker(0, 0), worker(0, 0)], "--node_rank 0 was given to two nodes"),
            ([worker(0, 0, 1), worker(1, 0, 2), worker(1, 1, 2)], "different numbers of processes"),
            ([worker(0, 0, resume="auto"), worker(1, 0)], "--resume auto on node 0, not given on node 1")):
        with pytest.raises(UserError, match=words):
            nodes._refuse_disagreement(everyone, len(everyone))


def test_the_launcher_gives_a_node_the_hosts_network(tmp_path):
    job = JOBS["train-dope"]
    args = {f.name: f.default for f in job.fields}
    args.update(outf=str(tmp_path / "out"), nnodes=2, rdzv="10.0.0.1:29400")
    spec = container_spec(job, args, False, "run1", create=False)
    assert spec["network"] == "host" and "--network host" in docker_run_command(spec)
    assert "--rdzv=10.0.0.1:29400" in spec["command"] and "--nnodes=2" in spec["command"]
    args.update(nnodes=None, rdzv=None)
    assert container_spec(job, args, False, "run2", create=False)["network"] is None


@pytest.mark.slow
def test_two_nodes_train_the_weights_one_node_of_two_processes_trains(tmp_path):
    """2 nodes x 1 process and 1 node x 2 processes: the same global batch, the same shards,
    the same weights. Global rank 0 (node 0's process) alone writes."""
    data = tmp_path / "data"
    write_dataset(str(data), 12, seed=2, width=64, height=48, progress=False)
    port = _port()
    validated = [a for a in TINY if a not in ("--val", "off")]   # the default held-out split
    procs = [_cli("train", "dope", "--data", data, "--outf", tmp_path / "nodes", *validated,
                  "--nnodes", 2, "--node_rank", rank, "--rdzv", "127.0.0.1:%d" % port,
                  "--nproc_per_node", 1) for rank in (1, 0)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "node 0 of 2" in outs[1] and "-> " in outs[1] and "-> " not in outs[0]
    # Node 1 writes nothing, but its log says how the run ended.
    assert "node 1: done: epochs 1..1; node 0 wrote the weights in" in outs[0]
    assert "held out" in outs[1] and "held out" not in outs[0]     # rank 0 alone validates
    assert (tmp_path / "nodes" / "net_best.pth").exists()
    one = _cli("train", "dope", "--data", data, "--outf", tmp_path / "one", *validated,
               "--gpus", 2)
    assert one.wait(timeout=300) == 0
    held_out = [(tmp_path / run / "val_frames.txt").read_text() for run in ("nodes", "one")]
    assert held_out[0] == held_out[1] and len(held_out[0].split()) == 6   # half of 12
    a, b = _weights(tmp_path / "nodes" / "net_epoch_01.pth"), _weights(tmp_path / "one" / "net_epoch_01.pth")
    assert a.keys() == b.keys()
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) <= 1e-6


@pytest.mark.slow
def test_a_rendezvous_that_never_comes_fails_in_one_line_within_the_timeout(tmp_path):
    data = tmp_path / "data"
    write_dataset(str(data), 2, seed=2, width=64, height=48, progress=False)
    started = time.time()
    lonely = _cli("train", "dope", "--data", data, "--outf", tmp_path / "out", *TINY,
                  "--nnodes", 2, "--node_rank", 1, "--rdzv", "127.0.0.1:%d" % _port(),
                  "--rdzv_timeout", 6)
    out = lonely.communicate(timeout=120)[0]
    assert lonely.returncode == 2
    last = out.strip().splitlines()[-1]
    assert last.startswith("pose-train: error: no rendezvous at 127.0.0.1:") and "--node_rank 0" in last
    # torch's C++ logger stays out of the agent's way: no connection tries, no C++ frames.
    assert "frame #" not in out and "socket.cpp" not in out and len(out.splitlines()) == 2, out
    assert time.time() - started < 6 + 30   # the timeout, and the interpreter's start
    assert not (tmp_path / "out" / "net_epoch_01.pth").exists()


def test_sigterm_while_a_node_waits_for_the_others_ends_it_as_a_shell_would(tmp_path):
    data = tmp_path / "data"
    write_dataset(str(data), 2, seed=2, width=64, height=48, progress=False)
    node = _cli("train", "dope", "--data", data, "--outf", tmp_path / "out", *TINY,
                "--nnodes", 2, "--node_rank", 1, "--rdzv", "127.0.0.1:%d" % _port())
    assert node.stdout.readline().startswith("node 1 of 2")
    time.sleep(3)       # into the wait
    node.send_signal(15)
    rest = node.communicate(timeout=30)[0]
    assert node.returncode == 143 and rest.strip().splitlines()[-1] == "pose-train: interrupted (SIGTERM)"
    assert not (tmp_path / "out" / "training_state.pt").exists()


def test_a_missing_path_is_named_before_the_node_waits_for_the_others(tmp_path):
    """Each node checks its own paths first: a typo must not wait out the rendezvous."""
    started = time.time()
    node = _cli("train", "dope", "--data", tmp_path / "no-such-set", "--outf", tmp_path / "out",
                *TINY, "--nnodes", 2, "--node_rank", 1, "--rdzv", "127.0.0.1:%d" % _port())
    out = node.communicate(timeout=120)[0]
    assert node.returncode == 2 and time.time() - started < 30      # not the 300 s timeout
    assert out.strip().splitlines() == [
        "pose-train: error: --data %s: no such file or folder; check the path (relative paths "
        "are taken from %s)" % (tmp_path / "no-such-set", REPO)]


@pytest.mark.slow
def test_sigterm_to_one_node_stops_every_node_at_one_step_and_both_resume(tmp_path):
    """SIGTERM to node 1's pose-train mid-run: it passes the signal to its process, every rank
    stops at the same step, node 0's first process saves one state, both end at once (no wait
    at torchrun's exit barrier); both rerun with --resume auto and finish with the weights of
    an uninterrupted run."""
    data = tmp_path / "data"
    write_dataset(str(data), 8, seed=2, width=64, height=48, progress=False)
    run = TINY[:2] + ["--epochs", "4"] + TINY[4:]
    port = _port()
    node = ["train", "dope", "--data", data, "--outf", tmp_path / "nodes", *run, "--nnodes", 2,
            "--rdzv", "127.0.0.1:%d" % port, "--nproc_per_node", 1]
    procs = [_cli(*node, "--node_rank", rank) for rank in (0, 1)]
    assert step_logged(tmp_path / "nodes")
    started = time.time()
    procs[1].send_signal(15)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert time.time() - started < 60          # not torchrun's 300 s exit barrier
    assert "SIGTERM passed to its 1 process(es)" in outs[1]
    assert "node 1: stopped with every node at epoch" in outs[1] and "--resume auto" in outs[1]
    assert "state saved in" in outs[0] and "with its own --node_rank" in outs[0]
    assert os.listdir(tmp_path / "nodes").count("training_state.pt") == 1
    assert not (tmp_path / "nodes" / "net_epoch_04.pth").exists()
    procs = [_cli(*node, "--node_rank", rank, "--resume", "auto") for rank in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    whole = _cli("train", "dope", "--data", data, "--outf", tmp_path / "whole", *run, "--gpus", 2)
    assert whole.wait(timeout=300) == 0
    a = _weights(tmp_path / "nodes" / "net_epoch_04.pth")
    b = _weights(tmp_path / "whole" / "net_epoch_04.pth")
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) <= 1e-6


@pytest.mark.slow
def test_sigterm_to_the_parent_of_local_processes_stops_every_rank_and_saves(tmp_path):
    """--gpus 2 without torchrun: a SIGTERM to the parent alone (kill PID, a scheduler) was
    not passed to the ranks, so nothing was saved."""
    data = tmp_path / "data"
    write_dataset(str(data), 8, seed=2, width=64, height=48, progress=False)
    run = TINY[:2] + ["--epochs", "6"] + TINY[4:]
    proc = _cli("train", "dope", "--data", data, "--outf", tmp_path / "run", *run, "--gpus", 2)
    try:
        assert step_logged(tmp_path / "run")
        proc.send_signal(15)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "stopped by SIGTERM" in out and "--resume auto" in out, out
    assert (tmp_path / "run" / "training_state.pt").exists()


@pytest.mark.slow
def test_a_node_killed_outright_takes_its_processes_with_it(tmp_path):
    """SIGKILL to node 1's pose-train (nothing can be passed on): its training process gets
    Linux's parent-death SIGTERM instead of training on alone, so every node stops at one step
    and node 0 saves the state. (Node 0's agent then waits at torchrun's exit barrier for the
    dead agent, 300 s, so the test ends it.)"""
    data = tmp_path / "data"
    write_dataset(str(data), 8, seed=2, width=64, height=48, progress=False)
    run = TINY[:2] + ["--epochs", "6"] + TINY[4:]
    node = ["train", "dope", "--data", data, "--outf", tmp_path / "nodes", *run, "--nnodes", 2,
            "--rdzv", "127.0.0.1:%d" % _port()]
    procs = [_cli(*node, "--node_rank", rank) for rank in (0, 1)]
    try:
        assert step_logged(tmp_path / "nodes")
        workers = nodes._children(procs[1].pid)
        assert workers
        procs[1].kill()
        out = procs[1].communicate(timeout=30)[0]
        deadline = time.time() + 60
        while time.time() < deadline and any(os.path.exists("/proc/%d" % pid) for pid in workers):
            time.sleep(0.5)
        assert not any(os.path.exists("/proc/%d" % pid) for pid in workers)
        # which step it is depends on the machine's speed; that every node stopped at one is what counts
        assert re.search(r"node 1: stopped with every node at epoch \d+ step \d+", out), out
        assert (tmp_path / "nodes" / "training_state.pt").exists()
    finally:
        procs[0].kill()
        procs[0].communicate(timeout=30)
