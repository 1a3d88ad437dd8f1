"""DOPE training on CPU at 32 px: learning, checkpoints, exact resume, stop, DDP sharding.

The network is the full 50 M-parameter DOPE, so every step costs seconds on a shared 2-core
CPU: each run here is a handful of steps.
"""
import json
import os
import shutil
import signal
import threading
import time
import zipfile

import pytest
import torch

from pose_train_py27.nets import DopeNetwork
from pose_train.cli import main as cli_main
from pose_train.dope.synth import write_dataset
from pose_train.training.metrics_log import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
# Training mechanics on 6 frames: validation (tests/test_dope_validation.py) would hold half out.
SIZE = ["--imagesize", "32", "--val", "off", "--local"]


@pytest.fixture(scope="module")
def data6(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth6")
    write_dataset(str(root), n=6, seed=5, width=64, height=48, object_name="cube",
                  progress=False)
    return str(root)


def _train(data, outf, *extra, workers=0):
    cli_main(["train", "dope", "--data", data, "--object", "CUBE", "--outf", str(outf),
              "--batchsize", "2", "--workers", str(workers)] + list(extra) + SIZE)


def _step_losses(outf):
    return [(r["epoch"], r["step"], r["loss"]) for r in read_metrics(os.path.join(outf,
                                                                                  "metrics.jsonl"))
            if r["kind"] == "step"]


@pytest.fixture(scope="module")
def baseline(data6, tmp_path_factory):
    """One uninterrupted epoch of 3 steps, with --save."""
    outf = tmp_path_factory.mktemp("baseline")
    _train(data6, outf, "--epochs", "1", "--save")
    return outf


def test_epoch_files_layout_and_previews(baseline):
    names = set(os.listdir(baseline))
    assert {"net_epoch_01.pth", "net_epoch_01.json", "training_state.pt", "metrics.jsonl",
            "data_report.txt", "train_batch_01.png"} <= names
    state = torch.load(os.path.join(baseline, "net_epoch_01.pth"), weights_only=True)
    assert all(k.startswith("module.") for k in state)
    # What DOPE's ROS node does with the file:
    torch.nn.DataParallel(DopeNetwork()).load_state_dict(state, strict=True)
    # ...and the file is in the format torch 1.4 (ROS Melodic) reads, not a zip archive.
    from pose_train_py27.legacy_format import check_for_torch14
    check_for_torch14(os.path.join(baseline, "net_epoch_01.pth"))
    assert not zipfile.is_zipfile(os.path.join(baseline, "net_epoch_01.pth"))
    meta = json.load(open(os.path.join(baseline, "net_epoch_01.json")))
    # The ROS 1 node's normalisation by default: it feeds (x - 0.5) / 0.5.
    assert meta["normalization"]["name"] == "ros" and meta["normalization"]["mean"] == [0.5] * 3
    assert meta["object"] == "cube" and meta["imagesize"] == 32
    extra = torch.load(os.path.join(baseline, "training_state.pt"), weights_only=True)["extra"]
    assert extra["normalization"]["std"] == [0.5, 0.5, 0.5]


def test_another_normalisation_is_refused_when_continuing(data6, baseline, tmp_path, capsys):
    shutil.copytree(baseline, tmp_path / "run")
    for resume in (["--resume", "auto"], ["--net", str(tmp_path / "run" / "net_epoch_01.pth")]):
        with pytest.raises(SystemExit) as stopped:
            _train(data6, tmp_path / "run", "--epochs", "1", "--normalize", "imagenet", *resume)
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "trained with --normalize ros; continue it with --normalize ros" \
            in err[0], err


def test_another_crop_size_or_sigma_is_refused_when_resuming(data6, tmp_path, capsys):
    """net_best.pth compared validation losses measured at two crop sizes when a resume
    changed --imagesize; a resume left without the flag keeps the run's own."""
    run = tmp_path / "run"
    _train(data6, run, "--epochs", "2", "--time_limit", "0.0001")   # a state at epoch 1 step 1
    capsys.readouterr()
    for changed in (["--imagesize", "48"], ["--imagesize", "32", "--sigma", "2.5"]):
        flag, value = changed[-2:]
        with pytest.raises(SystemExit) as stopped:
            cli_main(["train", "dope", "--data", data6, "--object", "cube", "--outf", str(run),
                      "--batchsize", "2", "--workers", "0", "--epochs", "2", "--resume", "auto",
                      "--val", "off", "--local"] + changed)
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "was trained with %s" % flag in err[0] and value in err[0], err
        assert "new --outf" in err[0]
    # Left out, the state's value is taken and said (32, not the CPU default 128).
    cli_main(["train", "dope", "--data", data6, "--object", "cube", "--outf", str(run), "--local",
              "--batchsize", "2", "--workers", "0", "--epochs", "2", "--resume", "auto",
              "--val", "off", "--time_limit", "0.0001"])
    out = capsys.readouterr().out
    assert "--resume: --imagesize 32, as" in out and "resuming" in out


def test_only_the_newest_epoch_weights_are_kept(data6, tmp_path):
    """Every epoch's 201 MB weights filled a disk (2.2 GB after the CPU first run)."""
    _train(data6, tmp_path / "run", "--epochs", "4", "--keep_epochs", "2")
    names = sorted(n for n in os.listdir(tmp_path / "run") if n.startswith("net_epoch_"))
    assert names == ["net_epoch_03.json", "net_epoch_03.pth", "net_epoch_04.json",
                     "net_epoch_04.pth"]
    assert (tmp_path / "run" / "training_state.pt").exists()
    # A file this run did not write stays, whatever its name (its sidecar names another run).
    from pose_train.dope.weights_files import prune_epochs
    shutil.copytree(tmp_path / "run", tmp_path / "other")
    assert prune_epochs(str(tmp_path / "other"), 6, 2, 1) == []     # another run's first epoch
    assert prune_epochs(str(tmp_path / "other"), 4, 1, 1) == [str(tmp_path / "other" / "net_epoch_03.pth")]
    _train(data6, tmp_path / "all", "--epochs", "2", "--keep_epochs", "0")
    assert os.path.exists(tmp_path / "all" / "net_epoch_01.pth")


def test_exact_resume_after_time_limit(data6, baseline, tmp_path, capsys):
    """Stop after step 1 (time limit), resume with --resume auto: same losses as uninterrupted."""
    _train(data6, tmp_path, "--epochs", "1", "--time_limit", "0.0001")
    out = capsys.readouterr().out
    assert "stopped by time limit at epoch 1 step 1" in out and "--resume auto" in out
    assert not os.path.exists(tmp_path / "net_epoch_01.pth")
    _train(data6, tmp_path, "--epochs", "1", "--resume", "auto")
    assert "resuming" in capsys.readouterr().out
    expected = _step_losses(baseline)
    assert len(expected) == 3
    assert _step_losses(tmp_path) == expected
    # The resumed epoch's mean covers its steps before the stop too.
    means = [[r["loss_mean"] for r in read_metrics(os.path.join(run, "metrics.jsonl"))
              if r["kind"] == "epoch" and r["status"] == "done"] for run in (tmp_path, baseline)]
    assert means[0] == pytest.approx(means[1], rel=1e-12) and len(means[0]) == 1
    a = torch.load(tmp_path / "net_epoch_01.pth", weights_only=True)
    b = torch.load(baseline / "net_epoch_01.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_continue_line_of_a_local_run_is_the_command_that_continues_it(data6, tmp_path, capsys,
                                                                        monkeypatch):
    """It dropped --local (so it went to Docker) and added --synth_n 200, which --data ignores."""
    import shlex
    monkeypatch.delenv("POSE_TRAIN_LOCAL", raising=False)
    argv = ["train", "dope", "--data", data6, "--object", "cube", "--outf", str(tmp_path),
            "--batchsize", "2", "--workers", "0"] + SIZE
    cli_main(["--local"] + argv + ["--epochs", "1", "--time_limit", "0.0001"])
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("continue with:")][-1]
    words = shlex.split(line[line.index("pose-train"):])
    assert words[:4] == ["pose-train", "--local", "train", "dope"] and "--synth_n" not in words
    cli_main(words[1:])     # --time_limit is kept: it stops again, one step later
    assert "resuming %s: epoch 1 step 1" % (tmp_path / "training_state.pt") in capsys.readouterr().out


def test_compiled_training_writes_the_dope_layout(data6, baseline, tmp_path):
    """--compile (the GPU speed path): the files still load into DOPE's DataParallel network,
    and the compiled run computes what the eager one did (same first-step loss)."""
    _train(data6, tmp_path, "--epochs", "1", "--compile")
    state = torch.load(tmp_path / "net_epoch_01.pth", weights_only=True)
    assert all(k.startswith("module.") and "_orig_mod" not in k for k in state)
    torch.nn.DataParallel(DopeNetwork()).load_state_dict(state, strict=True)
    model = torch.load(tmp_path / "training_state.pt", weights_only=True)["model"]
    assert not any("_orig_mod" in k for k in model)
    assert _step_losses(tmp_path)[0] == pytest.approx(_step_losses(baseline)[0], rel=1e-3)


def test_net_weights_continue_numbering_without_prefix(data6, baseline, tmp_path):
    bare = {k[len("module."):]: v for k, v in
            torch.load(baseline / "net_epoch_01.pth", weights_only=True).items()}
    torch.save(bare, tmp_path / "net_epoch_07.pth")          # DOPE-style file, no prefix
    out = tmp_path / "out"
    small = tmp_path / "two"
    write_dataset(str(small), n=2, seed=1, width=64, height=48, progress=False)
    # One loader worker here: the forkserver worker path runs at least once in the tests.
    _train(str(small), out, "--epochs", "1", "--net", str(tmp_path / "net_epoch_07.pth"),
           workers=1)
    assert os.path.exists(out / "net_epoch_08.pth")
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "epoch"] == [8]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])   # SIGHUP: a closed terminal
def test_sigterm_saves_state_at_step_boundary(data6, tmp_path, capsys, signum, terminal_signals):
    metrics = tmp_path / "metrics.jsonl"

    def killer():
        while not (metrics.exists() and metrics.read_text().count('"kind": "step"') >= 1):
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    threading.Thread(target=killer, daemon=True).start()
    _train(data6, tmp_path, "--epochs", "1")
    assert "stopped by %s" % signal.Signals(signum).name in capsys.readouterr().out
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) in {(1, 1), (1, 2), (1, 3)}


def test_unknown_object_fails_before_training(data6, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "dope", "--data", data6, "--object", "bicycle", "--outf",
                  str(tmp_path), "--workers", "0"] + SIZE)
    assert "classes found: cube" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "training_state.pt")


def test_a_net_that_is_not_weights_is_named_before_anything_is_written(data6, tmp_path, capsys):
    """It was refused only after the scan, leaving OUTF with data_report.txt and the lock."""
    junk = tmp_path / "net_epoch_03.pth"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(SystemExit):
        _train(data6, tmp_path / "out", "--net", str(junk))
    assert str(junk) in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_a_new_run_into_a_folder_that_holds_one_is_refused(data6, baseline, tmp_path, capsys):
    """It overwrote the earlier run and reported that run's net_best.pth as its own."""
    shutil.copytree(baseline, tmp_path / "run")
    before = (tmp_path / "run" / "net_epoch_01.pth").read_bytes()
    with pytest.raises(SystemExit):
        _train(data6, tmp_path / "run", "--epochs", "1", "--seed", "3")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds an earlier run" in err and "--resume auto" in err and "net_epoch_01.pth" in err
    assert (tmp_path / "run" / "net_epoch_01.pth").read_bytes() == before


def test_under_compose_the_refusal_names_a_new_folder_inside_the_mount(monkeypatch, tmp_path):
    """A second `docker compose run --rm train-dope` was told to "pass another --outf", but the
    compose user never typed one, and only a folder inside /out outlives the container."""
    from pose_train.errors import UserError
    from pose_train.training.checkpoint_io import refuse_an_earlier_run
    (tmp_path / "net_best.pth").write_bytes(b"")
    monkeypatch.setenv("POSE_TRAIN_CONTINUE_SKIP", "--outf=/out")
    with pytest.raises(UserError, match=r"adding --resume auto to the command, or pass another --outf "
                                        r"\(e.g. --outf %s\)" % (tmp_path / "run2")):
        refuse_an_earlier_run(str(tmp_path), ("net_*.pth",))


def test_ddp_two_gloo_processes_shard_the_data(tmp_path):
    data = tmp_path / "four"
    write_dataset(str(data), n=4, seed=2, width=64, height=48, progress=False)
    cli_main(["train", "dope", "--data", str(data), "--object", "cube", "--outf",
              str(tmp_path / "out"), "--epochs", "1", "--batchsize", "1", "--gpus", "2",
              "--workers", "0"] + SIZE)
    records = read_metrics(tmp_path / "out" / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    epoch = [r for r in records if r["kind"] == "epoch"][0]
    # 4 images over 2 ranks at batch 1: 2 steps per rank (not 4), 4 samples seen in total.
    assert len(steps) == 2 and epoch["samples"] == 4 and epoch["world_size"] == 2
    assert os.path.exists(tmp_path / "out" / "net_epoch_01.pth")


@pytest.mark.slow
def test_loss_falls_on_a_tiny_synthetic_set(data6):
    """Adam at the DOPE recipe's lr on two fixed synthetic crops: within 30 steps the loss goes
    well below what empty maps score, i.e. the net puts belief where the corners are (a
    CPU-sized check; the GPU learning check is benchmarks/learn_dope.py)."""
    from torch.utils.data import default_collate
    from pose_train.dope.data import scan
    from pose_train.dope.steps import StepConfig, forward_loss, prepare_batch
    from pose_train.dope.loader import DopeDataset

    samples, _ = scan([data6], "cube", imagesize=32)
    dataset = DopeDataset(samples[:2], 32, seed=0)
    batch = default_collate([dataset[0], dataset[1]])
    cfg = StepConfig(device=torch.device("cpu"), sigma=0.5)
    images, tb, ta, _, _ = prepare_batch(batch, cfg, epoch=0, step=0, train=False)
    stages = 6
    empty_maps = stages * float((tb ** 2).mean() + (ta ** 2).mean())
    torch.manual_seed(0)
    model = DopeNetwork()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(30):
        loss, _ = forward_loss(model, images, tb, ta, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.7 * empty_maps < losses[0], (empty_maps, losses)


def test_default_data_is_generated_once_and_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSE_TRAIN_CACHE", str(tmp_path / "cache"))
    for run in ("a", "b"):
        cli_main(["train", "dope", "--outf", str(tmp_path / run), "--epochs", "1",
                  "--batchsize", "2", "--synth_n", "2", "--workers", "0"] + SIZE)
    out = capsys.readouterr().out
    assert "generated synthetic dataset (2 images)" in out
    assert "using cached synthetic dataset (2 images)" in out
    assert os.path.exists(tmp_path / "b" / "net_epoch_01.pth")
    assert len(os.listdir(tmp_path / "cache")) == 1 + 2      # the set + decoded-frame cache


def test_convert_writes_the_ros_nodes_config_from_the_training_data(baseline, tmp_path, capsys):
    """convert --to melodic: NAME_melodic.yaml holds the node's entries, in the node's units."""
    import yaml
    from pose_train.dope.synth import OBJECT_SIZE
    for name in ("net_epoch_01.pth", "net_epoch_01.json"):
        shutil.copy(baseline / name, tmp_path / name)
    cli_main(["convert", str(tmp_path / "net_epoch_01.pth"), "--to", "melodic", "--local"])
    config = yaml.safe_load(open(tmp_path / "net_epoch_01_melodic.yaml"))
    assert config["weights"] == {"cube": "package://dope/weights/net_epoch_01_melodic.pth"}
    assert config["dimensions"]["cube"] == pytest.approx([100.0 * v for v in OBJECT_SIZE])
    assert config["class_ids"] == {"cube": 1} and len(config["draw_colors"]["cube"]) == 3
    assert config["model_transforms"]["cube"] == [[float(i == j) for j in range(4)] for i in range(4)]
    assert (config["thresh_angle"], config["thresh_map"], config["thresh_points"]) == (0.5, 0.01, 0.1)
    # 64x48 training frames, 32 px crops over the shorter side: the node should see 32 px high.
    assert config["downscale_height"] == 32
    # The node's sigma 3 belongs to 400 px crops; 32 px crops get the same smoothing in cells.
    assert config["sigma"] == pytest.approx(3 * 32 / 400.0)
    cli_main(["convert", str(tmp_path / "net_epoch_01.pth"), "--to", "melodic", "--local",
              "--out", str(tmp_path / "b.pth"), "--dimensions", "1,2,3"])
    assert yaml.safe_load(open(tmp_path / "b.yaml"))["dimensions"]["cube"] == [1.0, 2.0, 3.0]
    with pytest.raises(SystemExit):
        cli_main(["convert", str(tmp_path / "net_epoch_01.pth"), "--to", "melodic", "--local",
                  "--out", str(tmp_path / "c.pth"), "--dimensions", "1,2"])
    assert "--dimensions takes the cuboid's x,y,z in cm" in capsys.readouterr().err
    assert not (tmp_path / "c.pth").exists()


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_the_scalars_and_the_pictures(data6, tmp_path, monkeypatch):
    monkeypatch.setenv("POSE_TRAIN_TB_IMAGES_EVERY", "2")
    _train(data6, tmp_path, "--epochs", "1")
    acc = _events(tmp_path / "tensorboard")
    tags = acc.Tags()
    assert {"step/loss", "epoch/loss_mean", "epoch/img_per_s",
            "epoch/loader_wait_fraction"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("step/loss")] == [1, 2, 3]
    assert {"train/targets", "train/predicted"} <= set(tags["images"])
    assert [e.step for e in acc.Images("train/predicted")] == [1, 3]
    assert os.path.isfile(tmp_path / "metrics.jsonl")   # the JSON lines stay


def test_metrics_agree_with_where_the_run_starts(data6, baseline, tmp_path):
    """A killed run's later records are dropped on resume, and a fresh run starts a fresh file
    (epoch 1 appeared twice before)."""
    from pose_train.training.metrics_log import MetricsLog
    _train(data6, tmp_path, "--epochs", "1", "--time_limit", "0.0001")       # state at step 1
    with MetricsLog(tmp_path / "metrics.jsonl") as log:                     # then killed after step 2
        log.write(kind="step", epoch=1, step=2, loss=123.0)
    _train(data6, tmp_path, "--epochs", "1", "--resume", "auto")
    assert _step_losses(tmp_path) == _step_losses(baseline)
    with pytest.raises(SystemExit):      # a fresh run would overwrite this one: refused
        _train(data6, tmp_path, "--epochs", "1")
    assert _step_losses(tmp_path) == _step_losses(baseline)
    for name in os.listdir(tmp_path):    # the user clears the folder's weights and state
        if name.endswith((".pth", ".pt")):
            os.remove(tmp_path / name)
    _train(data6, tmp_path, "--epochs", "1")                                 # fresh, same folder
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["kind"] for r in records].count("epoch") == 1
    assert _step_losses(tmp_path) == _step_losses(baseline)
