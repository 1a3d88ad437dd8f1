"""ImageNet trunks from torch's hub cache: resolution, the hash check, the loud fallback, the
launcher's mount. The cache is pre-seeded with locally made files (this machine cannot reach
the weight host, and the real download is never faked as tested)."""
import hashlib
import os

import pytest
import torch

from pose_train import pretrained
from pose_train.errors import UserError
from pose_train.jobs import JOBS, namespace


def _seed_vgg(tmp_path, monkeypatch):
    """A VGG-19 features file with DOPE's trunk shapes, named NAME-HASH as torch names it."""
    from pose_train.dope.network import DopeNetwork
    torch.manual_seed(3)
    state = {k.replace("vgg.", "features.", 1): v for k, v in DopeNetwork().state_dict().items()
             if k.startswith("vgg.")}
    raw = tmp_path / "vgg.pth"
    torch.save(state, str(raw))
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    path = home / "hub" / "checkpoints" / ("vgg19-%s.pth" % digest)
    raw.rename(path)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setitem(pretrained.URLS, "vgg19", "https://example.invalid/vgg19-%s.pth" % digest)
    return path, state


def test_without_a_cache_the_trunk_is_random_and_it_says_how_to_fill_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    said = []
    assert pretrained.resolve(None, "vgg19", said.append) is None
    assert "RANDOM" in said[0] and "pose-train fetch-weights vgg19" in said[0]
    with pytest.raises(UserError, match="fetch-weights vgg19"):
        pretrained.resolve("imagenet", "vgg19")
    assert pretrained.resolve("none", "vgg19", said.append) is None and len(said) == 1
    assert pretrained.resolve("/some/file.pth", "vgg19") == "/some/file.pth"


@pytest.mark.parametrize("recipe, said", [("fast", "note: no ImageNet vgg19 in torch's cache"),
                                           ("dope", "WARNING: no ImageNet vgg19")])
def test_a_random_trunk_is_a_warning_only_for_a_recipe_not_made_for_one(tmp_path, monkeypatch, recipe, said):
    """The fast recipe's figures are from a random trunk: the first run warned that it would
    "converge much more slowly", naming the image's cache path, which the user cannot see."""
    from pose_train.dope import start
    from pose_train.dope.network import DopeNetwork
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    lines = []
    args = namespace("train-dope", outf=str(tmp_path / "run"), recipe=recipe)
    start.starting_point(args, DopeNetwork(), lines.append)
    assert len(lines) == 1 and lines[0].startswith(said), lines
    assert str(tmp_path / "empty") in lines[0]              # --local: where the cache is
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("POSE_TRAIN_RUNTIME", "modern")       # in the image, no cache mounted
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    pretrained.resolve(None, "vgg19", lines.append, random_ok=recipe == "fast")
    assert "cache:" in lines[1] and str(tmp_path / "c") not in lines[1], lines[1]


def test_a_cached_file_is_the_default_and_loads_into_the_trunk(tmp_path, monkeypatch):
    from pose_train.dope.weights_files import load_pretrained_vgg
    from pose_train.dope.network import DopeNetwork
    path, state = _seed_vgg(tmp_path, monkeypatch)
    assert pretrained.resolve(None, "vgg19") == str(path)
    net = DopeNetwork()
    assert load_pretrained_vgg(net, pretrained.resolve("imagenet", "vgg19")) == 20
    assert torch.equal(net.state_dict()["vgg.0.weight"], state["features.0.weight"])


def test_a_damaged_cache_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    path, _ = _seed_vgg(tmp_path, monkeypatch)
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(UserError, match="delete it and run `pose-train fetch-weights`"):
        pretrained.resolve(None, "vgg19")


def test_the_launcher_mounts_the_cache_and_points_torch_home_at_it(tmp_path, monkeypatch):
    from pose_train.launcher.run import container_spec
    _seed_vgg(tmp_path, monkeypatch)
    args = vars(namespace("train-dope", outf=str(tmp_path / "o")))
    spec = container_spec(JOBS["train-dope"], args, False, "r1")
    home = str(tmp_path / "torch")
    assert spec["environment"]["TORCH_HOME"] == "/host" + home
    assert any(m.source == home and m.read_only for m in spec["mounts"])
    synth = container_spec(JOBS["synth-dope"], vars(namespace("synth-dope", out=str(tmp_path / "s"))),
                           False, "r2")
    assert "TORCH_HOME" not in synth["environment"]


def test_a_failed_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setitem(pretrained.URLS, "resnet50", "http://127.0.0.1:9/resnet50-deadbeef.pth")
    with pytest.raises(UserError, match="cannot download"):
        pretrained.fetch("resnet50", say=lambda line: None)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert not folder.exists() or os.listdir(folder) == []
