"""The keypoint trainer: strict kp6d key layout, loss falls, two stages, exact resume."""
import json
import os
from types import SimpleNamespace

import pytest
import torch

from keypoints_helpers import TinyNet, make_sequence, run_prepare, train_args
from pose_train_py27.nets import FastPose
from pose_train.errors import UserError
from pose_train.keypoints import model as kpmodel, train
from pose_train.training.metrics_log import read_metrics


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("kp")
    data = make_sequence(root / "lm", n=12, seed=2)
    folder = run_prepare(data, root / "prep", kptype="corner", kpnum=9)
    return os.path.dirname(folder)


@pytest.fixture
def tiny(monkeypatch):
    """Machinery tests do not need FastPose's 40M parameters on a 2-core CPU."""
    monkeypatch.setattr(kpmodel, "build", lambda k, arch: TinyNet(k, arch))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_kp6d_key_layout_loads_strictly(tmp_path):
    net = FastPose(9, architecture="resnet101")
    sd = net.state_dict()
    for key in ("preact.conv1.weight", "preact.layer1.0.se.fc.0.weight", "preact.layer3.22.conv3.weight",
                "duc1.conv.weight", "duc2.bn.running_mean", "conv_out.weight"):
        assert key in sd
    assert not any(k.startswith("module.") for k in sd)
    # kp6d: torch.save(model.module.state_dict()) as .pkl, in the pre-zipfile format of its era.
    legacy = tmp_path / "kp6d.pkl"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    fresh = FastPose(9, architecture="resnet101")
    kpmodel.load_weights(fresh, str(legacy))
    assert torch.equal(fresh.conv_out.weight, net.conv_out.weight)
    # A DataParallel-era file with `module.` keys loads too (the prefix is dropped first).
    prefixed = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, prefixed)
    kpmodel.load_weights(FastPose(9, architecture="resnet101"), str(prefixed))


def test_mismatched_weights_are_user_errors(tmp_path):
    sd = FastPose(9, architecture="resnet50").state_dict()
    path = tmp_path / "w.pkl"
    torch.save(sd, path)
    with pytest.raises(UserError, match="shapes differ"):
        kpmodel.load_weights(FastPose(17, architecture="resnet50"), str(path))
    with pytest.raises(UserError, match="missing"):
        kpmodel.load_weights(FastPose(9, architecture="resnet101"), str(path))


def test_optimizers_and_schedules():
    params = [torch.nn.Parameter(torch.zeros(2))]
    kinds = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "sgd": torch.optim.SGD,
             "nag": torch.optim.SGD}
    for name, cls in kinds.items():
        opt = kpmodel.make_optimizer(name, params, 1e-3)
        assert isinstance(opt, cls) and opt.param_groups[0]["lr"] == 1e-3
    assert kpmodel.make_optimizer("nag", params, 1e-3).param_groups[0]["nesterov"]
    for schedule, epoch, lr in (("step", 9, 1e-5), ("cosine", 5, 5e-4), ("none", 9, 1e-3)):
        opt = kpmodel.make_optimizer("adam", params, 1e-3)
        kpmodel.make_scheduler(opt, 1e-3, schedule, 10, epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr), schedule
    with pytest.raises(UserError):
        kpmodel.make_optimizer("lbfgs", params, 1e-3)


@pytest.mark.slow
def test_train_job_end_to_end_with_fastpose(prepared, tmp_path):
    out = tmp_path / "run"
    train.main(train_args(prepared, out, kptype="corner", epochs=2, trainBatch=4))
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records]
    assert len(losses) == 2 and losses[-1] < losses[0]
    for r in records:    # poses through eval keypoints' PnP, and the learnt-nothing level
        assert 0 <= r["val_add_01d"] <= 1 and 0 <= r["val_proj_5px"] <= 1
        assert 0 < r["val_empty_map_loss"] and r["val_pose_failures"] >= 0
    assert os.path.isfile(out / "best.pkl") and os.path.isfile(out / "final.pkl")
    kpmodel.load_weights(FastPose(9, architecture="resnet50"), str(out / "final.pkl"))
    side = json.load(open(out / "best.json"))
    assert side["input_hw"] == [64, 64] and len(side["keypoints_3d"]) == 9 and side["key_prefix"] == ""
    assert side["normalization"]["mean"] == [0.406, 0.457, 0.480] and side["weights"] == "best.pkl"
    from pose_train.keypoints import evaluate
    assert evaluate.input_size(SimpleNamespace(model=str(out / "best.pkl"), input_res_h=None,
                                               input_res_w=None)) == (64, 64)


@pytest.mark.slow
def test_loss_falls_below_the_empty_heatmap_baseline(prepared):
    """FastPose learns the targets: on 4 frames without augmentation the loss must end far
    below the loss of predicting empty heatmaps (where a collapsed network sits)."""
    from pose_train.keypoints import data as kpdata, heatmaps, steps, transforms
    from pose_train.training.signals import GracefulStop
    ann, crops = kpdata.load_prepared(os.path.join(prepared, "kp_01_corner_9"))
    data = kpdata.to_device(ann, crops, [0, 1, 2, 3], torch.device("cpu"))
    torch.manual_seed(0)
    net = FastPose(9, architecture="resnet50")
    cfg = steps.StepConfig(torch.device("cpu"), 4, 0, (64, 64), 1.0,
                           augment=transforms.Augment(scale=0.0, rotate=0.0, color=0.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    _, target, weight, _ = transforms.make_batch(data, torch.arange(4), (64, 64), 1.0)
    baseline = heatmaps.masked_mse(torch.zeros_like(target), target, weight).item()
    with GracefulStop() as stop:
        losses = [steps.train_epoch(net, optimizer, data, cfg, epoch, 0, lambda: stop.requested).loss_mean
                  for epoch in range(1, 26)]
    assert losses[0] > baseline and losses[-1] < 0.5 * baseline, (baseline, losses)


def test_two_stage_schedule(prepared, tmp_path, tiny, monkeypatch):
    loaded = []
    real_load = kpmodel.load_weights
    monkeypatch.setattr(kpmodel, "load_weights", lambda m, p: (loaded.append(p), real_load(m, p)))
    out = tmp_path / "run"
    train.main(train_args(prepared, out, kptype="corner", epochs=3, dpg_from_epoch=2))
    assert [r["dpg"] for r in read_metrics(out / "metrics.jsonl")] == [False, False, True]
    assert loaded == [os.path.join(str(out), "best.pkl")]      # stage 2 starts from the best
    # The seed's manual way: a second run from best.pkl with --addDPG.
    out2 = tmp_path / "manual"
    train.main(train_args(prepared, out2, kptype="corner", epochs=1, addDPG=True,
                          loadModel=str(out / "best.pkl")))
    assert [r["dpg"] for r in read_metrics(out2 / "metrics.jsonl")] == [True]


class _StopAfter:
    """A TimeLimit that expires after a number of steps (a SIGTERM or --time_limit)."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, hours):
        return self

    def tick(self):
        self.steps -= 1

    def expired(self):
        return self.steps <= 0


def test_resume_is_exact_mid_epoch(prepared, tmp_path, tiny, monkeypatch, capsys):
    straight = tmp_path / "straight"
    train.main(train_args(prepared, straight, kptype="corner", epochs=2, dpg_from_epoch=1,
                          addDPG=False))
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as m:
        m.setattr(train, "TimeLimit", _StopAfter(6))    # 4 steps per epoch: stops in epoch 2
        train.main(train_args(prepared, stopped, kptype="corner", epochs=2, dpg_from_epoch=1))
    state = torch.load(stopped / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 2)    # epochs count from 1 in every state
    assert not os.path.exists(stopped / "final.pkl")
    with pytest.raises(UserError, match=r"stopped mid-epoch \(epoch 2 step 2\) with --trainBatch "
                                        r"2; resume it with --trainBatch 2"):
        train.main(train_args(prepared, stopped, kptype="corner", epochs=2, dpg_from_epoch=1,
                              resume="auto", trainBatch=1))
    capsys.readouterr()
    train.main(train_args(prepared, stopped, kptype="corner", epochs=2, dpg_from_epoch=1,
                          resume="auto"))
    # The state holds every weight: no word about an ImageNet trunk it will not use.
    out = capsys.readouterr().out
    assert "resumed" in out and "RANDOM" not in out
    a, b = _weights(straight / "final.pkl"), _weights(stopped / "final.pkl")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert json.load(open(straight / "best.json")) == json.load(open(stopped / "best.json"))
    # The resumed epoch's mean covers its steps before the stop too.
    losses = [[r["loss"] for r in read_metrics(run / "metrics.jsonl")] for run in (straight, stopped)]
    assert losses[0] == losses[1] and len(losses[0]) == 2


@pytest.mark.slow
def test_compiled_run_writes_plain_keys_and_resumes(prepared, tmp_path, tiny, monkeypatch):
    """--compile (the GPU speed path) through both stages and a resume: files keep kp6d's keys."""
    out = tmp_path / "compiled"
    with monkeypatch.context() as m:
        m.setattr(train, "TimeLimit", _StopAfter(6))
        train.main(train_args(prepared, out, kptype="corner", epochs=2, dpg_from_epoch=1, compile=True))
    train.main(train_args(prepared, out, kptype="corner", epochs=2, dpg_from_epoch=1, compile=True,
                          resume="auto"))
    state = torch.load(out / "training_state.pt", weights_only=True)
    for sd in (_weights(out / "final.pkl"), _weights(out / "best.pkl"), state["model"]):
        assert not any(k.startswith(("_orig_mod.", "module.")) for k in sd), list(sd)[:3]
        TinyNet(9).load_state_dict(sd)     # strict
    assert [r["dpg"] for r in read_metrics(out / "metrics.jsonl")] == [False, True]


def test_bad_train_flags(prepared, tmp_path):
    with pytest.raises(UserError, match="multiples of 32"):
        train.main(train_args(prepared, tmp_path, kptype="corner", inputResW=48))
    with pytest.raises(UserError, match="datatype"):
        train.main(train_args(prepared, tmp_path, kptype="corner", datatype="synth"))
    with pytest.raises(UserError, match="--nClasses 17"):
        train.main(train_args(os.path.join(prepared, "kp_01_corner_9"), tmp_path, nClasses=17))
    with pytest.raises(UserError, match="prepare keypoints"):
        train.main(train_args(prepared, tmp_path, kptype="sift"))


def test_cli_train_two_stages_with_seed_flags(prepared, tmp_path, tiny):
    from pose_train.cli import main
    out = tmp_path / "cli"
    main(["--local", "train", "keypoints", "--nClasses", "9", "--seq", "01", "--kptype", "corner",
          "--optMethod", "RMSprop", "--trainBatch", "2", "--dataset", "LINEMOD", "--datatype", "gt",
          "--data", prepared, "--outf", str(out), "--epochs", "2", "--dpg-from-epoch", "1",
          "--inputResH", "64", "--inputResW", "64", "--arch", "resnet50", "--resume", "auto",
          "--lr_schedule", "cosine", "--snapshot", "1"])
    assert [r["dpg"] for r in read_metrics(out / "metrics.jsonl")] == [False, True]
    assert os.path.isfile(out / "model_1.pkl") and os.path.isfile(out / "model_2.pkl")


def test_pretrained_backbone_from_a_local_file(tmp_path, capsys):
    net = FastPose(9, architecture="resnet50")
    imagenet = {k: v for k, v in net.preact.state_dict().items() if ".se." not in k}
    imagenet["fc.weight"] = torch.zeros(1000, 2048)          # torchvision's classifier: ignored
    path = tmp_path / "resnet50.pth"
    torch.save(imagenet, path)
    fresh = FastPose(9, architecture="resnet50")
    kpmodel.load_pretrained(fresh, str(path))
    assert torch.equal(fresh.preact.layer4[2].conv3.weight, net.preact.layer4[2].conv3.weight)
    assert "SE layers start fresh" in capsys.readouterr().out
    torch.save({"something.else": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="no ResNet backbone"):
        kpmodel.load_pretrained(fresh, str(path))


@pytest.mark.slow
def test_two_processes_ddp_on_cpu(prepared, tmp_path):
    """Two gloo ranks: rank 0 alone writes the files; both stop at the same step."""
    from keypoints_helpers import tiny_process
    from pose_train.training.distributed import spawn_local
    out = tmp_path / "ddp"
    args = dict(kptype="corner", epochs=2, trainBatch=4, dpg_from_epoch=1, gpus=2)
    # A time limit inside the save margin: both ranks agree to stop after the first step.
    spawn_local(tiny_process, 2, train_args(prepared, out, time_limit=0.001, **args))
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1) and not os.path.exists(out / "final.pkl")
    spawn_local(tiny_process, 2, train_args(prepared, out, resume="auto", **args))
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["dpg"]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (3, 0)    # both epochs done: next would be 3
    assert os.path.isfile(out / "final.pkl")


def test_batch_must_split_over_processes(prepared, tmp_path):
    with pytest.raises(UserError, match="multiple of 2"):
        train.main(train_args(prepared, tmp_path, kptype="corner", trainBatch=3, gpus=2))


def test_tensorboard_gets_the_scalars_and_the_heatmaps(prepared, tmp_path, tiny, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    monkeypatch.setenv("POSE_TRAIN_TB_IMAGES_EVERY", "1")
    out = tmp_path / "run"
    train.main(train_args(prepared, out, kptype="corner", epochs=2))
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"epoch/loss", "epoch/val_pck", "epoch/lr", "epoch/img_per_s", "epoch/val_add_01d",
            "epoch/val_empty_map_loss", "step/loss"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("epoch/val_pck")] == [1, 2]
    assert "train/input_target_predicted" in tags["images"]


def _damaged_copy(prepared, tmp_path, change):
    """The prepared folder `prepare keypoints` wrote, with its annotations passed through change()."""
    import shutil
    copy = tmp_path / "prep"
    shutil.copytree(prepared, copy)
    path = next(copy.rglob("annotations.json"))
    ann = json.loads(path.read_text())
    change(ann)
    path.write_text(json.dumps(ann))
    return str(copy), str(path)


def test_nan_keypoints_are_refused_at_the_scan_naming_the_frame(prepared, tmp_path, tiny):
    def nan_keypoint(ann):
        ann["frames"][3]["kp2d"][0][1] = float("nan")
    data, path = _damaged_copy(prepared, tmp_path, nan_keypoint)
    with pytest.raises(UserError, match="frame 3 .* non-finite keypoint") as err:
        train.main(train_args(data, tmp_path / "run", kptype="corner", epochs=1))
    assert path in str(err.value)
    assert not (tmp_path / "run" / "best.pkl").exists()


def test_a_set_without_a_visible_keypoint_is_refused(prepared, tmp_path, tiny):
    def all_hidden(ann):
        for frame in ann["frames"]:
            frame["vis"] = [0] * len(frame["vis"])
    data, path = _damaged_copy(prepared, tmp_path, all_hidden)
    with pytest.raises(UserError, match="no keypoint is visible"):
        train.main(train_args(data, tmp_path / "run", kptype="corner", epochs=1))


def test_a_non_finite_loss_stops_before_a_nan_model_is_saved(prepared, tmp_path, tiny):
    """Extreme (finite) labels blow the loss up: the run stops, naming the step, and writes no weights."""
    def far_keypoints(ann):
        for frame in ann["frames"]:
            frame["crop"]["scale"] = 1e30
    data, _ = _damaged_copy(prepared, tmp_path, far_keypoints)
    with pytest.raises(UserError, match=r"training loss became (nan|inf) by epoch 1 step \d+"):
        train.main(train_args(data, tmp_path / "run", kptype="corner", epochs=1, lr=1e30))
    assert not (tmp_path / "run" / "best.pkl").exists() and not (tmp_path / "run" / "final.pkl").exists()


def test_the_progress_line_counts_epochs_as_the_summary_does(prepared, tmp_path, tiny, monkeypatch, capsys):
    """It said 'epoch 0' while the summary below it said 'epoch 1/1'."""
    monkeypatch.setenv("POSE_TRAIN_PROGRESS_EVERY", "0")
    train.main(train_args(prepared, tmp_path / "run", kptype="corner", epochs=2, trainBatch=4))
    said = capsys.readouterr()
    lines = [l for l in (said.out + said.err).replace("\r", "\n").splitlines() if ": step " in l]
    assert lines and {l.split(":")[0] for l in lines} == {"epoch 1/2", "epoch 2/2"}
