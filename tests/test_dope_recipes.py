"""train dope --recipe fast|dope: what each trains with, and that both save the node's network."""
import json
import os

import pytest
import torch

import infer_helpers as ih
from pose_train.dope import recipes, start
from pose_train.dope.folding import ConvBN, deployable, fold_error
from pose_train.dope.network import DopeNetwork
from pose_train.training import checkpoint_io as state_io
from pose_train_py27.keys import add_prefix


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe-frames")
    ih.synth_frames(folder, 8, seed=3)
    return str(folder)


def _train(data, outf, *extra, epochs=1):
    return ih.local_cli("train", "dope", "--data", data, "--object", "cube", "--outf", outf,
                        "--epochs", epochs, "--imagesize", 64, "--batchsize", 4, "--workers", 0,
                        "--pretrained", "none", "--val", "off", *extra)


@pytest.fixture(scope="module")
def fast_run(data, tmp_path_factory, one_thread):
    outf = tmp_path_factory.mktemp("fast-run")
    assert _train(data, outf, "--recipe", "fast") == 0
    return outf


def test_fast_weights_are_dopes_layout_and_the_folding_is_exact(fast_run):
    """The saved file holds DopeNetwork's keys and shapes exactly (no BatchNorm), and computes
    what the BatchNorm graph that trained computes in eval mode."""
    saved = torch.load(str(fast_run / "net_epoch_01.pth"), map_location="cpu", weights_only=True)
    want = add_prefix(DopeNetwork().state_dict())
    assert list(saved) == list(want)
    assert all(saved[k].shape == want[k].shape for k in want)
    state = state_io.load_state(str(fast_run / state_io.STATE_NAME))
    trained = start.training_net(recipes.RECIPES["fast"], DopeNetwork(), state, False, print)
    state_io.restore_state(state, trained, rng=False)
    # from a random trunk: 6 of its 12 convolutions and stage 1's 2 x 4 hidden ones trained,
    # each with a BatchNorm
    assert sum(isinstance(m, ConvBN) for m in trained.modules()) == 12 - 6 + 2 * 4
    assert trained.stages == 1
    plain = DopeNetwork()
    plain.load_state_dict({k[len("module."):]: v for k, v in saved.items()}, strict=True)
    images = torch.randn(2, 3, 64, 64)
    trained.eval()
    with torch.no_grad():
        (b1,), (a1,) = trained(images)
        beliefs, affinities = plain(images)
    # every stage of the saved network gives stage 1's maps: the node decodes the sixth
    for b, a in zip(beliefs, affinities):
        diff = max(float((b - b1).abs().max()), float((a - a1).abs().max()))
        assert diff < 1e-4, diff        # measured ~1e-7 here: float rounding only
    assert fold_error(trained, images) == pytest.approx(diff, abs=1e-6)
    meta = json.load(open(str(fast_run / "net_epoch_01.json")))
    assert meta["config"]["recipe"] == "fast" and meta["sigma_output_px"] == 1.0


def test_a_run_continues_only_with_its_recipe(fast_run, data, capsys):
    assert _train(data, fast_run, "--recipe", "dope", "--resume", "auto", epochs=2) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--recipe fast" in err[0] and "training_state.pt" in err[0]
    assert "net_epoch_*.pth" in err[0]


def test_the_fast_weights_start_a_dope_run(fast_run, data, tmp_path):
    """--net of a fast run's weights trains on with DOPE's recipe (and back): plain weights."""
    assert _train(data, tmp_path / "dope", "--recipe", "dope", "--net",
                  fast_run / "net_epoch_01.pth") == 0
    assert _train(data, tmp_path / "fast", "--recipe", "fast", "--net",
                  tmp_path / "dope" / "net_epoch_02.pth") == 0
    assert os.path.isfile(str(tmp_path / "fast" / "net_epoch_03.pth"))
    # from weights, the fast recipe keeps (and trains) every trunk layer they hold
    state = state_io.load_state(str(tmp_path / "fast" / state_io.STATE_NAME))
    trained = start.training_net(recipes.RECIPES["fast"], DopeNetwork(), state, False, print)
    assert sum(isinstance(m, ConvBN) for m in trained.modules()) == 12 + 2 * 4
    state_io.restore_state(state, trained, rng=False)


def test_the_dope_recipe_is_dopes_own(data, tmp_path, one_thread):
    """Adam at a constant 1e-4, no weight decay, no normalisation layers, sigma 0.5 cells."""
    assert _train(data, tmp_path, "--recipe", "dope") == 0
    state = state_io.load_state(str(tmp_path / state_io.STATE_NAME))
    groups = state["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [1e-4] and groups[0]["weight_decay"] == 0
    assert not any("bn" in k for k in state["model"])
    meta = json.load(open(str(tmp_path / "net_epoch_01.json")))
    assert meta["sigma_output_px"] == 0.5 and meta["config"]["lr"] == 1e-4
    # resumed without --recipe, the run keeps its own (the default would be fast)
    assert _train(data, tmp_path, "--resume", "auto", epochs=2) == 0
    state = state_io.load_state(str(tmp_path / state_io.STATE_NAME))
    assert state["epoch"] == 3 and not any("bn" in k for k in state["model"])
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-4


def test_a_validated_run_draws_what_net_best_finds(data, tmp_path, capsys, one_thread):
    """OUTF/heldout/: the held-out frames as infer dope draws them, small frames enlarged;
    net_best.pth then starts a run at the epoch its sidecar names."""
    import cv2
    ih.synth_frames(tmp_path / "val", 5, seed=9)
    assert ih.local_cli("train", "dope", "--data", data, "--object", "cube", "--outf",
                        tmp_path / "run", "--epochs", 1, "--imagesize", 64, "--batchsize", 4,
                        "--workers", 0, "--pretrained", "none", "--val", tmp_path / "val") == 0
    out = capsys.readouterr().out
    pictures = sorted(os.listdir(str(tmp_path / "run" / "heldout")))
    assert len(pictures) == 4 and "what it finds in 4 held-out frames" in out
    image = cv2.imread(str(tmp_path / "run" / "heldout" / pictures[0]))
    assert image.shape[1] >= 480                 # 320 px frames drawn at 2x
    assert _train(data, tmp_path / "more", "--recipe", "dope", "--net",
                  tmp_path / "run" / "net_best.pth") == 0
    assert "(epoch 1 by its sidecar); training continues at epoch 2" in capsys.readouterr().out


def test_the_schedules():
    fast, dope = recipes.RECIPES["fast"], recipes.RECIPES["dope"]
    s = recipes.Schedule(fast, 1e-3, 1.0, first_epoch=1, end_epoch=10, steps_per_epoch=10)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    lrs, sigmas = [], []
    for epoch in range(1, 11):
        for step in range(10):
            sigmas.append(s.before_step(opt, epoch, step))
            lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < 0.5e-3 and max(lrs) == pytest.approx(1e-3, rel=0.05)
    assert lrs.index(max(lrs)) <= 4 and lrs[-1] == pytest.approx(0.02e-3, rel=0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))        # decays after the warm-up
    assert sigmas[0] == 1.5 and sigmas[-1] == pytest.approx(1.0, abs=0.01)
    s = recipes.Schedule(dope, 1e-4, 0.5, 1, 10, 10)
    assert {s.before_step(opt, e, 3) for e in (1, 5, 10)} == {0.5}
    assert opt.param_groups[0]["lr"] == 1e-4
    # a run continued at epoch 11 from weights is a run of its own: its schedule starts again
    s = recipes.Schedule(fast, 1e-3, 1.0, first_epoch=11, end_epoch=12, steps_per_epoch=10)
    assert s.fraction(11, 0) == 0.0 and s.fraction(12, 5) == 0.75


def test_deployable_leaves_a_plain_network_alone():
    net = DopeNetwork(stages=2)
    assert deployable(net) is net


def test_fast_weights_load_strictly_in_the_legacy_runtime(fast_run, tmp_path, monkeypatch):
    """convert --to melodic --verify: the real py2.7 + torch 1.4 loads the fast run's weights
    strictly into DOPE's network, as the Melodic node does, and computes the same maps."""
    import compat_helpers as h
    python = h.legacy_python_argv()[0]
    monkeypatch.setenv("POSE_TRAIN_LEGACY_PYTHON", python)
    assert h.run_convert(fast_run / "net_epoch_01.pth", tmp_path / "melodic.pth", verify=True) == 0
    assert os.path.isfile(str(tmp_path / "melodic.pth"))
