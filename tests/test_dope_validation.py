"""train dope's validation: the held-out split, the figures per epoch, net_best, the
empty-map warning, and a resumed run keeping its split. Every run is the real trainer."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch

from infer_helpers import local_cli
from pose_train.dope.synth import write_dataset
from pose_train.dope.validation import held_out_count
from pose_train.training.metrics_log import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_torch_threads")]
VAL_KEYS = {"val_loss", "val_empty_map_loss", "val_peaks_within_2px", "val_detection_rate",
            "val_add_01d", "val_add_auc", "val_median_px", "val_seconds",
            "val_fraction_of_epoch", "val_frames", "val_false_positives", "val_peak_value"}


def _data(folder, n, seed=3, constant=False):
    write_dataset(str(folder), n=n, seed=seed, width=96, height=72, progress=False,
                  distance=(0.25, 0.4))
    if constant:     # labels intact, nothing in the pixels to learn them from
        for path in glob.glob(str(folder / "*.png")):
            cv2.imwrite(path, np.full((72, 96, 3), 128, np.uint8))
    return str(folder)


def _train(data, outf, *extra):
    code = local_cli("train", "dope", "--data", data, "--object", "cube", "--outf", outf,
                     "--imagesize", "32", "--batchsize", "4", "--workers", "0",
                     "--pretrained", "none", *extra)
    assert code == 0


def _epochs(outf):
    return [r for r in read_metrics(os.path.join(outf, "metrics.jsonl")) if r["kind"] == "epoch"]


def _split(outf):
    with open(os.path.join(outf, "val_frames.txt")) as f:
        return f.read().split()



def test_held_out_count_follows_the_rule():
    assert [held_out_count(n) for n in (1, 6, 20, 400, 1000, 10000)] == [0, 3, 8, 20, 50, 200]


def test_a_tiny_run_validates_each_epoch_and_keeps_the_best(tmp_path):
    data = _data(tmp_path / "d", 20)
    _train(data, tmp_path / "run", "--epochs", "2")
    held = _split(tmp_path / "run")
    assert len(held) == 8 and len(set(held)) == 8
    epochs = _epochs(tmp_path / "run")
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        assert VAL_KEYS <= set(r) and r["val_frames"] == 8
        assert r["samples"] == 12            # the 8 held-out frames never train
        assert r["val_empty_map_loss"] > 0 and 0 <= r["val_add_01d"] <= 1
    best = json.load(open(tmp_path / "run" / "net_best.json"))
    assert best["val"]["val_frames"] == 8 and best["epoch"] in (1, 2)
    assert best["normalization"]["name"] == "ros"
    state = torch.load(tmp_path / "run" / "net_best.pth", weights_only=True)
    assert all(k.startswith("module.") for k in state)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    board.Reload()
    assert {"epoch/val_loss", "epoch/val_empty_map_loss", "epoch/val_add_01d",
            "epoch/val_detection_rate"} <= set(board.Tags()["scalars"])
    assert [e.step for e in board.Scalars("epoch/val_add_01d")] == [1, 2]


def test_a_best_pair_cut_between_its_renames_is_repaired_on_resume(tmp_path, capsys):
    """kill -9 between net_best.pth's rename and net_best.json's left epoch 2's weights under
    epoch 1's sidecar; readers believed the pair. The sidecar names its bytes now."""
    from pose_train.files import sha256_of
    data = _data(tmp_path / "d", 20)
    _train(data, tmp_path / "run", "--epochs", "1")
    _train(data, tmp_path / "other", "--epochs", "1", "--seed", "7")
    run = tmp_path / "run"
    best = json.load(open(run / "net_best.json"))
    assert best["weights_sha256"] == sha256_of(run / "net_best.pth")
    # What the cut save leaves: other weights under the old sidecar (real files, both).
    os.replace(tmp_path / "other" / "net_epoch_01.pth", run / "net_best.pth")
    capsys.readouterr()
    _train(data, run, "--epochs", "2", "--resume", "auto")
    out = capsys.readouterr().out
    assert "repaired: %s and its json described different epochs" % (run / "net_best.pth") in out
    best = json.load(open(run / "net_best.json"))
    assert best["epoch"] == 2 and best["weights_sha256"] == sha256_of(run / "net_best.pth")


def test_a_run_refused_for_no_training_frames_leaves_no_split(tmp_path, capsys):
    """--val equal to --data was refused but left val_frames.txt, which then refused the next,
    correct run into that --outf."""
    data, val = _data(tmp_path / "d", 8), _data(tmp_path / "v", 4, seed=9)
    code = local_cli("train", "dope", "--data", data, "--val", data, "--object", "cube",
                     "--outf", tmp_path / "run", "--imagesize", "32", "--batchsize", "4",
                     "--workers", "0", "--pretrained", "none", "--epochs", "1")
    assert code == 2 and "no frames left to train on" in capsys.readouterr().err
    assert not (tmp_path / "run" / "val_frames.txt").exists()
    _train(data, tmp_path / "run", "--epochs", "1", "--val", val)
    assert sorted(_split(tmp_path / "run")) == sorted(
        os.path.realpath(p) for p in glob.glob(os.path.join(val, "*.png")))


def test_a_signal_at_an_epochs_end_stops_there_not_one_step_later(tmp_path, monkeypatch, capsys,
                                                                terminal_signals):
    """SIGHUP during the epoch's validation: the run went on into the next epoch's first step
    before saving (a scheduler's short grace could end it first)."""
    import signal
    from pose_train.dope import validation
    data = _data(tmp_path / "d", 20)
    real = validation.Watch.epoch_end

    def hang_up_meanwhile(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(validation.Watch, "epoch_end", hang_up_meanwhile)
    _train(data, tmp_path / "run", "--epochs", "3")
    assert "stopped by SIGHUP at epoch 2 step 0" in capsys.readouterr().out
    records = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert {r["epoch"] for r in records if r["kind"] == "step"} == {1}
    state = torch.load(tmp_path / "run" / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 0)


def test_resume_keeps_the_split(tmp_path):
    data = _data(tmp_path / "d", 20)
    _train(data, tmp_path / "run", "--epochs", "1")
    first = _split(tmp_path / "run")
    # Another --seed would draw another slice: the saved list must win.
    _train(data, tmp_path / "run", "--epochs", "2", "--resume", "auto", "--seed", "9")
    assert _split(tmp_path / "run") == first
    assert [r["epoch"] for r in _epochs(tmp_path / "run")] == [1, 2]
    assert _epochs(tmp_path / "run")[-1]["samples"] == 12


def test_val_folder_keeps_all_of_data_for_training(tmp_path):
    data = _data(tmp_path / "d", 8)
    val = _data(tmp_path / "v", 3, seed=8)
    _train(data, tmp_path / "run", "--epochs", "1", "--val", val)
    assert sorted(_split(tmp_path / "run")) == sorted(glob.glob(os.path.join(val, "*.png")))
    record = _epochs(tmp_path / "run")[0]
    assert record["samples"] == 8 and record["val_frames"] == 3


def test_val_every_validates_between_steps(tmp_path):
    data = _data(tmp_path / "d", 20)
    _train(data, tmp_path / "run", "--epochs", "1", "--val_every", "2")
    mids = [r for r in read_metrics(str(tmp_path / "run" / "metrics.jsonl")) if r["kind"] == "val"]
    assert [r["step"] for r in mids] == [2] and "val_loss" in mids[0]
    # N dividing the epoch: its last step is the epoch's own validation, not a second one.
    _train(data, tmp_path / "run3", "--epochs", "1", "--val_every", "3")
    records = read_metrics(str(tmp_path / "run3" / "metrics.jsonl"))
    assert [r for r in records if r["kind"] == "val"] == []
    assert [r["val_frames"] for r in records if r["kind"] == "epoch"] == [8]


def test_constant_images_trigger_the_empty_map_warning(tmp_path, capsys):
    data = _data(tmp_path / "d", 12, constant=True)
    # DOPE's recipe: it sits at the empty maps on frames without an object to find. (The fast
    # recipe learns the maps' average from the same frames, a little below that loss.)
    _train(data, tmp_path / "run", "--epochs", "3", "--recipe", "dope")
    out = capsys.readouterr().out
    assert "WARNING: the network is predicting empty maps" in out
    assert "--pretrained imagenet" in out and "--lr" in out and "--recipe fast" in out
    assert out.count("WARNING: the network is predicting empty maps") == 1   # from epoch 3


def test_no_warning_while_the_maps_have_peaks():
    """A network whose loss sits above the empty maps' because it draws its peaks in the
    wrong places (the fast recipe early on) is not predicting empty maps."""
    from pose_train.dope.validation import empty_map_warning
    early = {"val_loss": 0.65, "val_empty_map_loss": 0.57, "val_peak_value": 0.3}
    assert empty_map_warning([early] * 3, "out") is None
    flat = dict(early, val_peak_value=0.04)
    assert "predicting empty maps" in empty_map_warning([flat] * 3, "out")
    older = {"val_loss": 1.0, "val_empty_map_loss": 1.0}     # a record from before the peak
    assert "predicting empty maps" in empty_map_warning([older] * 3, "out")


def test_the_warning_survives_a_resume(tmp_path, capsys):
    data = _data(tmp_path / "d", 12, constant=True)
    _train(data, tmp_path / "run", "--epochs", "2", "--recipe", "dope")
    assert "predicting empty maps" not in capsys.readouterr().out
    _train(data, tmp_path / "run", "--epochs", "3", "--resume", "auto", "--recipe", "dope")
    assert "predicting empty maps" in capsys.readouterr().out


def _fake(tmp_path, n):
    from types import SimpleNamespace
    return [SimpleNamespace(image=str(tmp_path / ("%06d.png" % i))) for i in range(n)]


def test_val_frames_that_are_also_in_data_never_train(tmp_path):
    from types import SimpleNamespace
    from pose_train.dope.validation import split
    samples, said = _fake(tmp_path, 10), []
    args = SimpleNamespace(outf=str(tmp_path), seed=0)
    train, held = split(samples, args, said.append, True, val_samples=samples[:3])
    assert [s.image for s in train] == [s.image for s in samples[3:]] and len(held) == 3
    assert "3 --val frame(s) are also in --data" in said[0]


def test_the_default_split_is_seeded_and_saved(tmp_path):
    from types import SimpleNamespace
    from pose_train.dope.validation import split
    samples = _fake(tmp_path, 200)
    for name in "abc":
        (tmp_path / name).mkdir()
    a = split(samples, SimpleNamespace(outf=str(tmp_path / "a"), seed=1), print, True)
    b = split(samples, SimpleNamespace(outf=str(tmp_path / "b"), seed=1), print, True)
    c = split(samples, SimpleNamespace(outf=str(tmp_path / "c"), seed=2), print, True)
    assert [s.image for s in a[1]] == [s.image for s in b[1]] != [s.image for s in c[1]]
    assert len(a[1]) == 10 and not set(s.image for s in a[0]) & set(s.image for s in a[1])
    assert _split(tmp_path / "a") == [s.image for s in a[1]]


def test_a_saved_split_wins_and_a_disagreeing_val_is_refused(tmp_path):
    from types import SimpleNamespace
    from pose_train.dope.validation import split
    from pose_train.errors import UserError
    data, val = _fake(tmp_path / "d", 10), _fake(tmp_path / "v", 3)
    args = SimpleNamespace(outf=str(tmp_path), seed=0)
    first = split(data, args, print, True, val_samples=val)
    # Resumed with the same --val: the same split; with --val lost or changed: refused.
    again = split(data, args, print, True, val_samples=val)
    assert [s.image for s in again[1]] == [s.image for s in first[1]] and len(again[0]) == 10
    with pytest.raises(UserError, match="in neither --data nor --val now.*if the data moved"):
        split(data, args, print, True)
    with pytest.raises(UserError, match="--val names others"):
        split(data, args, print, True, val_samples=val[:2])


def test_a_default_split_refuses_a_val_added_on_resume(tmp_path):
    from types import SimpleNamespace
    from pose_train.dope.validation import split
    from pose_train.errors import UserError
    data = _fake(tmp_path, 40)
    args = SimpleNamespace(outf=str(tmp_path), seed=0)
    train, held = split(data, args, print, True)
    assert split(data, args, print, True) == (train, held)
    with pytest.raises(UserError, match="holds the held-out frames this run started with"):
        split(data, args, print, True, val_samples=_fake(tmp_path / "v", 3))


def test_val_off_trains_on_every_frame(tmp_path, capsys):
    data = _data(tmp_path / "d", 8)
    _train(data, tmp_path / "run", "--epochs", "1", "--val", "off")
    assert "validation off (--val off)" in capsys.readouterr().out
    record = _epochs(tmp_path / "run")[0]
    assert record["samples"] == 8 and "val_loss" not in record
    assert not os.path.exists(tmp_path / "run" / "val_frames.txt")
