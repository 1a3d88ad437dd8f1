"""Loader items, the decoded-frame cache, --pretrained VGG import and `validate dope`."""
import os

import cv2
import numpy as np
import pytest
import torch

from pose_train_py27.nets import DopeNetwork
from pose_train.cli import main as cli_main
from pose_train.dope import loader as loader_mod
from pose_train.dope.weights_files import epoch_from_name, load_pretrained_vgg, weights_name
from pose_train.dope.data import scan
from infer_helpers import corrupt_jpeg
from pose_train.dope.loader import DecodedCache, DopeDataset, decoded_cache
from pose_train.dope.synth import write_dataset
from pose_train.errors import UserError


@pytest.fixture(scope="module")
def data4(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth4")
    write_dataset(str(root), n=4, seed=7, width=96, height=72, progress=False)
    return str(root)


def test_items_are_deterministic_and_cache_skips_decoding(data4, tmp_path, monkeypatch):
    samples, _ = scan([data4], "cube", imagesize=64)
    plain = DopeDataset(samples, 64, seed=3)
    plain.set_epoch(2)
    cache = decoded_cache(samples, str(tmp_path)).create()
    cached = DopeDataset(samples, 64, seed=3, cache=cache)
    cached.set_epoch(2)
    first = [cached[i] for i in range(4)]                 # fills the cache
    monkeypatch.setattr(loader_mod.cv2, "imread", _no_decode)
    for i in range(4):
        again, ref = cached[i], first[i]
        assert torch.equal(again[0], ref[0]) and torch.equal(again[1], ref[1])
    monkeypatch.undo()
    assert torch.equal(plain[0][0], first[0][0])          # cache or not: identical crops
    plain.set_epoch(3)
    assert not torch.equal(plain[0][0], first[0][0])      # a new epoch draws new crops
    img, pts, valid, idx = first[0]
    assert img.shape == (64, 64, 3) and img.dtype == torch.uint8
    assert pts.shape == (plain.max_objects, 9, 2) and valid[0] and idx == 0


def _no_decode(*args, **kwargs):
    raise AssertionError("decoded again although the frame is cached")


def test_cache_keeps_rows_apart(tmp_path):
    cache = DecodedCache(str(tmp_path / "c.u8"), [(3, 2), (2, 2)]).create()
    a = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    b = np.full((2, 2, 3), 200, np.uint8)
    assert cache.get(0) is None
    cache.put(1, b)
    cache.put(0, a)
    cache.put(0, np.zeros((9, 9, 3), np.uint8))            # wrong size: ignored
    assert np.array_equal(cache.get(0), a) and np.array_equal(cache.get(1), b)
    assert decoded_cache([], str(tmp_path)) is None


def test_pretrained_vgg_from_torchvision_layout(tmp_path):
    torch.manual_seed(1)
    source = DopeNetwork()
    tv = {k.replace("vgg.", "features.", 1): v for k, v in source.state_dict().items()
          if k.startswith("vgg.") and int(k.split(".")[1]) <= 21}
    tv["classifier.0.weight"] = torch.zeros(2, 2)                      # ignored
    torch.save(tv, tmp_path / "vgg19.pth")
    torch.manual_seed(2)
    model = DopeNetwork()
    assert load_pretrained_vgg(model, str(tmp_path / "vgg19.pth")) == 20
    assert torch.equal(model.vgg[21].weight, source.vgg[21].weight)
    assert not torch.equal(model.vgg[23].weight, source.vgg[23].weight)  # adapter stays fresh
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="shape"):
        load_pretrained_vgg(model, str(tmp_path / "bad.pth"))


def test_weights_names():
    assert weights_name(7) == "net_epoch_07.pth" and weights_name(123) == "net_epoch_123.pth"
    assert epoch_from_name("/x/net_epoch_10.pth") == 10
    assert epoch_from_name("net_cube_0042.pth") == 42 and epoch_from_name("best.pth") is None


def test_validate_writes_report_and_grids(data4, tmp_path, capsys):
    cv2.imwrite(os.path.join(str(tmp_path), "lonely.png"), np.zeros((72, 96, 3), np.uint8))
    out = tmp_path / "out"
    cli_main(["validate", "dope", "--data", data4, "--data", str(tmp_path), "--object", "Cube",
              "--outf", str(out), "--imagesize", "64", "--local"])
    assert (out / "validate_01.png").exists()
    report = (out / "data_report.txt").read_text()
    assert "lonely.png: no annotation file lonely.json" in report
    assert "4 images used" in capsys.readouterr().out
    grid = cv2.imread(str(out / "validate_01.png"))
    assert grid.shape[0] == 256 and grid.shape[1] == 4 * 2 * 256


def test_validate_reports_a_frame_two_data_reach_once(data4, tmp_path, capsys):
    """--data DIR --data LINK-TO-DIR: data_report.json listed both folders with every frame."""
    import json
    os.symlink(data4, tmp_path / "link")
    out = tmp_path / "out"
    cli_main(["validate", "dope", "--data", data4, "--data", str(tmp_path / "link"), "--object",
              "cube", "--outf", str(out), "--imagesize", "64", "--local"])
    captured = capsys.readouterr()
    assert "4 of its 4 frames are already under another --data" in captured.err
    assert "4 more frames counted under an earlier --data" in captured.out
    folders = json.load(open(out / "data_report.json"))["folders"]
    assert [(f["frames"], f["frames_under_an_earlier_data"]) for f in folders] == [(4, 0), (0, 4)]


def test_validate_on_a_full_disk_is_one_line(data4, tmp_path, capsys, monkeypatch):
    """"could not write validate_01.png" was a traceback (an OSError from cv2.imwrite's False)."""
    import errno
    from pose_train_py27 import atomic

    def full(path, *args, **kw):
        if path.endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kw)
    real = atomic.write_atomic
    monkeypatch.setattr("pose_train.files.write_atomic", full)
    with pytest.raises(SystemExit) as stopped:
        cli_main(["validate", "dope", "--data", data4, "--object", "cube", "--outf",
                  str(tmp_path / "out"), "--imagesize", "64", "--local"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "validate_01.png: cannot write it (No space left on device)" in err and "Traceback" not in err


class _NanDope(torch.nn.Module):
    """Stands in for DOPE with the right output shapes and a NaN in them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        b, _, h, w = x.shape
        out = self.w * torch.full((b, 1, h // 8, w // 8), float("nan"))
        return [out.expand(b, 9, -1, -1)], [out.expand(b, 16, -1, -1)]


def test_non_finite_loss_stops_with_a_clear_message(data4):
    from pose_train.dope.steps import StepConfig, train_one_epoch
    from pose_train.dope.loader import EpochBatches, make_loader
    from pose_train.training.distributed import DistInfo
    from pose_train.training.metrics_log import MetricsLog

    samples, _ = scan([data4], "cube", imagesize=32)
    dataset = DopeDataset(samples, 32)
    sampler = EpochBatches([torch.utils.data.SequentialSampler(dataset)], 2)
    model = _NanDope()
    opt = torch.optim.Adam(model.parameters())
    cfg = StepConfig(device=torch.device("cpu"), sigma=0.5)
    with pytest.raises(UserError, match="loss became nan at epoch 1 step 0"):
        train_one_epoch(model, opt, None, make_loader(dataset, sampler, 2, 0), cfg, 1, 0,
                        lambda: False, MetricsLog("unused", enabled=False), DistInfo(),
                        show_progress=False)


@pytest.mark.parametrize("frame, crop, tolerance", [((96, 72), 64, 1.0), ((640, 480), 64, 4.0)])
def test_device_warp_matches_the_loader_warp(tmp_path, frame, crop, tolerance):
    """The GPU path (whole frames + affines, cut batch-wise) sees what the CPU path sees."""
    from torch.utils.data import default_collate
    from pose_train.dope.augment import warp_batch
    from pose_train.dope.loader import device_warp_pays

    write_dataset(str(tmp_path), n=3, seed=4, width=frame[0], height=frame[1], progress=False)
    samples, _ = scan([str(tmp_path)], "cube", imagesize=crop)
    on_cpu = DopeDataset(samples, crop, seed=1)
    on_dev = DopeDataset(samples, crop, seed=1, device_warp=True)
    frames, matrices, points, valid, _ = default_collate([on_dev[i] for i in range(3)])
    crops = warp_batch(frames, matrices, crop) * 255.0
    for i in range(3):
        ref, ref_points, _, _ = on_cpu[i]
        assert torch.equal(points[i], ref_points)
        diff = (crops[i] - ref.float()).abs().mean().item()
        assert diff < tolerance, diff
    assert device_warp_pays(samples, crop) == (frame == (96, 72))


def test_a_complete_but_corrupt_jpeg_trains_as_an_empty_frame_and_is_named(tmp_path, capfd):
    """The scan reads headers and trailers; libjpeg's 'Corrupt JPEG data' (no file name) came
    only at decode time, and the garbage pixels were trained on with their labels."""
    write_dataset(str(tmp_path), n=2, seed=7, width=96, height=72, progress=False)
    jpg = corrupt_jpeg(tmp_path / "000000.png", zeros=60)
    samples, report = scan([str(tmp_path)], "cube", imagesize=64)
    assert len(samples) == 2 and not report.lines          # nothing to see without decoding
    dataset = DopeDataset(samples, 64, seed=3)
    index = [os.path.basename(s.image) for s in samples].index("000000.jpg")
    img, pts, valid, _ = dataset[index]
    assert not valid.any() and dataset.decode_failures == 1
    err = capfd.readouterr().err
    assert str(jpg) in err and "damaged JPEG (Corrupt JPEG data" in err and "empty frame" in err
    assert dataset[1 - index][2].any()
