"""convert --to melodic / --to modern: each known breaker converted or refused by key name."""
import collections
import dataclasses
import enum
import os
import pathlib

import numpy as np
import pytest
import torch

import compat_helpers as h
from pose_train_py27.legacy_format import check_for_torch14, scan_file
from pose_train_py27.nets import DopeNetwork
from pose_train.errors import UserError


def small_state():
    return collections.OrderedDict([("conv.weight", torch.randn(4, 3, 3, 3)),
                                    ("conv.bias", torch.randn(4)),
                                    ("bn.num_batches_tracked", torch.tensor(3))])


@pytest.fixture(scope="module")
def dope_state():
    torch.manual_seed(0)
    return DopeNetwork(stages=1).state_dict()


def melodic(tmp_path, obj, name="src.pth", **kw):
    """Save obj as the source, convert --to melodic, return (state torch 1.4 would load, path)."""
    src, dst = tmp_path / name, tmp_path / (name + ".melodic")
    save = kw.pop("save", torch.save)
    save(obj, src)
    assert h.run_convert(src, dst, **kw) == 0
    check_for_torch14(str(dst))  # protocol 2, legacy format, only state-dict globals
    return torch.load(dst, weights_only=True), dst


@dataclasses.dataclass
class TrainConfig:
    lr: float = 1e-4


class Mode(enum.Enum):
    TRAIN = 1


def test_numpy2_values_dropped_and_arrays_become_tensors(tmp_path):
    state = small_state()
    state["anchors"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    out, _ = melodic(tmp_path, {"model": state, "best": np.float64(0.5), "mean": np.ones(3)})
    assert set(out) == set(state)
    assert torch.equal(out["anchors"], torch.arange(6.).view(2, 3))


def test_pathlib_metadata_is_dropped_without_trust(tmp_path):
    out, _ = melodic(tmp_path, {"state_dict": small_state(), "data": pathlib.Path("/data/x")})
    assert list(out) == list(small_state())


@pytest.mark.parametrize("extra", [TrainConfig(), Mode.TRAIN], ids=["dataclass", "enum"])
def test_custom_classes_need_trust(tmp_path, extra):
    with pytest.raises(UserError, match=r"test_compat_convert\.(TrainConfig|Mode).*--trust"):
        melodic(tmp_path, {"model": small_state(), "cfg": extra})
    out, _ = melodic(tmp_path, {"model": small_state(), "cfg": extra}, name="b.pth",
                     trust=["test_compat_convert"])
    assert list(out) == list(small_state())


def test_class_missing_at_load_time_is_stubbed_with_trust(tmp_path):
    gone = type("Config", (), {"__module__": "__main__"})
    import __main__
    __main__.Config = gone
    try:
        torch.save({"model": small_state(), "cfg": gone()}, tmp_path / "src.pth")
    finally:
        del __main__.Config
    dst = tmp_path / "out.pth"
    assert h.run_convert(tmp_path / "src.pth", dst, trust=["__main__.Config"]) == 0
    assert list(torch.load(dst, weights_only=True)) == list(small_state())


def test_pickled_module_needs_trust_then_converts(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(UserError, match=r"torch\.nn\.modules\..*--trust"):
        melodic(tmp_path, net)
    out, _ = melodic(tmp_path, net, name="m.pth", trust=["torch.nn"])
    assert all(torch.equal(out[k], v) for k, v in net.state_dict().items())


def test_neg_bit_tensor_is_materialised(tmp_path):
    src_state = {"w": torch._neg_view(torch.arange(4.))}
    torch.save(src_state, tmp_path / "neg.pth")
    assert scan_file(str(tmp_path / "neg.pth")).rebuild_arg_counts == {7}  # the breaker
    out, dst = melodic(tmp_path, src_state)
    assert scan_file(str(dst)).rebuild_arg_counts == {6}
    assert torch.equal(out["w"], -torch.arange(4.)) and not out["w"].is_neg()


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn,
                                   torch.float8_e5m2, torch.complex64])
def test_new_and_complex_dtypes_refused_naming_the_key(tmp_path, dtype):
    state = small_state()
    state["head.odd"] = torch.zeros(2).to(dtype)
    with pytest.raises(UserError, match=r"'head\.odd'.*torch 1\.4"):
        melodic(tmp_path, state)
    assert not (tmp_path / "src.pth.melodic").exists()


def test_conj_bit_complex_refused(tmp_path):
    with pytest.raises(UserError, match="'z'"):
        melodic(tmp_path, {"z": torch.tensor([1 + 2j]).conj()})


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_protocol_4_source_becomes_protocol_2(tmp_path, legacy):
    def save(obj, path):
        torch.save(obj, path, pickle_protocol=4, _use_new_zipfile_serialization=not legacy)
    src_scan_path = tmp_path / "p4.pth"
    save(small_state(), src_scan_path)
    assert scan_file(str(src_scan_path)).protocol == 4
    out, dst = melodic(tmp_path, small_state(), save=save)
    assert scan_file(str(dst)).protocol == 2 and list(out) == list(small_state())


def test_optimizer_state_is_dropped(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert torch.is_tensor(opt.state_dict()["state"][0]["step"])  # torch 2.x: step is a tensor
    ckpt = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}
    out, _ = melodic(tmp_path, ckpt)
    assert list(out) == ["weight", "bias"]


def test_half_bf16_double_become_fp32_ints_bools_kept(tmp_path):
    state = {"h": torch.ones(2, dtype=torch.float16), "b": torch.ones(2, dtype=torch.bfloat16),
             "d": torch.ones(2, dtype=torch.float64), "i": torch.ones(2, dtype=torch.int64),
             "m": torch.tensor([True, False])}
    out, _ = melodic(tmp_path, state)
    f32 = torch.float32
    assert {k: v.dtype for k, v in out.items()} == {
        "h": f32, "b": f32, "d": f32, "i": torch.int64, "m": torch.bool}


def test_views_and_transposes_are_written_contiguous_and_alone(tmp_path):
    big = torch.arange(100000.)
    state = {"t": big[:6].view(2, 3).t(), "slice": big[10:20]}
    out, dst = melodic(tmp_path, state)
    assert torch.equal(out["t"], state["t"]) and out["t"].is_contiguous()
    assert dst.stat().st_size < 2000  # not the 400 kB storage both views live in


def test_dope_gets_module_prefix(tmp_path, dope_state):
    out, _ = melodic(tmp_path, dope_state)
    assert all(k.startswith("module.") for k in out) and len(out) == len(dope_state)


def test_dope_compile_and_training_state_layouts(tmp_path, dope_state):
    compiled = {"_orig_mod." + k: v for k, v in dope_state.items()}
    out, _ = melodic(tmp_path, {"format": "pose-train-state", "model": compiled, "epoch": 3})
    assert sorted(out) == sorted("module." + k for k in dope_state)


def test_prefix_flags(tmp_path, dope_state):
    kept, _ = melodic(tmp_path, dope_state, name="k.pth", keep_prefix=True)
    assert list(kept) == list(dope_state)
    prefixed = {"module." + k: v for k, v in dope_state.items()}
    stripped, _ = melodic(tmp_path, prefixed, name="s.pth", strip_prefix=True)
    assert list(stripped) == list(dope_state)
    with pytest.raises(UserError, match="contradict"):
        melodic(tmp_path, dope_state, name="x.pth", keep_prefix=True, strip_prefix=True)


def test_wrong_model_and_missing_keys_fail_naming_keys(tmp_path, dope_state):
    with pytest.raises(UserError, match="keys are those of dope"):
        melodic(tmp_path, dope_state, model="keypoints")
    broken = dict(dope_state)
    del broken["m1_1.8.bias"]
    with pytest.raises(UserError, match=r"1 missing \(module\.m1_1\.8\.bias\)"):
        melodic(tmp_path, broken, name="b.pth")


def test_keypoints_lose_module_prefix(tmp_path):
    from pose_train_py27.nets import FastPose
    with torch.device("meta"):
        shapes = FastPose(num_classes=3, architecture="resnet50").state_dict()
    state = {"module." + k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    out, _ = melodic(tmp_path, state)
    assert list(out) == list(shapes)


def test_modern_output_pth_and_safetensors(tmp_path):
    legacy_src = tmp_path / "old.pth"
    state = {b"conv.weight": torch.randn(2, 2), "tied": None}
    state["tied"] = state[b"conv.weight"]  # tied weights share memory
    torch.save(state, legacy_src, _use_new_zipfile_serialization=False)
    from safetensors.torch import load_file
    assert h.run_convert(legacy_src, tmp_path / "new.pth", to="modern") == 0
    assert h.run_convert(legacy_src, tmp_path / "new.safetensors", to="modern",
                         format="safetensors") == 0
    for loaded in (torch.load(tmp_path / "new.pth", weights_only=True),
                   load_file(tmp_path / "new.safetensors")):
        assert sorted(loaded) == ["conv.weight", "tied"]
        assert torch.equal(loaded["tied"], state[b"conv.weight"])
    assert scan_file(str(tmp_path / "new.pth")).format == "zip"


def test_modern_keeps_dtypes_melodic_cannot(tmp_path):
    torch.save({"u": torch.arange(3).to(torch.uint16)}, tmp_path / "u.pth")
    assert h.run_convert(tmp_path / "u.pth", tmp_path / "u2.pth", to="modern") == 0
    assert torch.load(tmp_path / "u2.pth", weights_only=True)["u"].dtype == torch.uint16


def test_verify_without_legacy_runtime_says_how(tmp_path, dope_state, monkeypatch, capsys):
    monkeypatch.delenv("POSE_TRAIN_LEGACY_PYTHON", raising=False)
    monkeypatch.delenv("POSE_TRAIN_LOCAL", raising=False)
    torch.save(dope_state, tmp_path / "d.pth")
    dst = tmp_path / "d_melodic.pth"
    with pytest.raises(UserError) as failed:   # a script must not read success
        h.run_convert(tmp_path / "d.pth", dst, verify=True)
    err = str(failed.value)
    assert failed.value.code != 0 and "\n" not in err
    assert "NOT VERIFIED" in err and "pose-train verify %s" % dst in err
    assert "POSE_TRAIN_LEGACY_PYTHON" in err
    assert dst.exists()   # the converted file itself is good; only the check is missing
    ref = torch.load(str(dst) + ".parity.pt", weights_only=True)
    assert ref["model"] == "dope" and tuple(ref["input"].shape) == (1, 3, 64, 64)
    # The same verifier module runs here too (the real check is the legacy runtime's).
    from pose_train_py27.verify import main as verify_main
    from types import SimpleNamespace
    assert verify_main(SimpleNamespace(ckpt=str(dst), reference=None, model="auto")) == 0
    assert "OK %s (dope" % dst in capsys.readouterr().out


def test_plain_values_beside_tensors_are_dropped(tmp_path):
    out, _ = melodic(tmp_path, {"w": torch.ones(2), "epoch": 3, "object": "cracker"})
    assert list(out) == ["w"]


def test_pickled_network_whose_class_is_gone_gives_its_weights_with_trust(tmp_path):
    """The seed era's torch.save(DataParallel(net)) with the training script's own class."""
    import __main__

    class GoneNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
            self.register_buffer("scratch", torch.zeros(1), persistent=False)

    GoneNet.__module__, GoneNet.__qualname__ = "__main__", "GoneNet"
    __main__.GoneNet = GoneNet
    try:
        wrapped = torch.nn.DataParallel(GoneNet())
        expected = wrapped.state_dict()
        torch.save(wrapped, tmp_path / "src.pth")
    finally:
        del __main__.GoneNet
    dst = tmp_path / "out.pth"
    assert h.run_convert(tmp_path / "src.pth", dst, trust=["__main__", "torch.nn"]) == 0
    out = torch.load(dst, weights_only=True)
    assert list(out) == list(expected) and "module.scratch" not in out
    assert all(torch.equal(out[k], v) for k, v in expected.items())


def test_refused_conversion_leaves_no_file_and_unwritable_out_is_one_line(tmp_path):
    torch.save({"z": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.pth")
    with pytest.raises(UserError):
        h.run_convert(tmp_path / "c.pth", tmp_path / "c_melodic.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pth")
    from pose_train_py27.errors import InputError   # UserError's base: the CLI prints either
    with pytest.raises(InputError, match="c.pth is a file, so it cannot be made there"):
        h.run_convert(tmp_path / "w.pth", tmp_path / "c.pth" / "w_melodic.pth")


def test_sidecar_json_travels_with_melodic_weights(tmp_path):
    import json
    torch.save({"w": torch.ones(2)}, tmp_path / "net_epoch_60.pth")
    from pose_train_py27 import sidecar
    sidecar.write(str(tmp_path / "net_epoch_60.pth"),
                  sidecar.dope_meta("cube", 400, "imagenet", 0.5, [10, 8, 6], [640, 480]))
    assert h.run_convert(tmp_path / "net_epoch_60.pth", tmp_path / "net_epoch_60_melodic.pth") == 0
    meta = json.loads((tmp_path / "net_epoch_60_melodic.json").read_text())
    assert meta["normalization"]["name"] == "imagenet"
    assert meta["weights"] == "net_epoch_60_melodic.pth"


def test_sidecar_json_travels_with_modern_weights_too(tmp_path):
    """--to modern wrote the weights alone: infer then decoded with the node's defaults (sigma
    3, downscale_height 500, object 'object') and fed them the wrong normalisation, silently."""
    import json
    from pose_train_py27 import sidecar
    torch.save({"module.w": torch.ones(2)}, tmp_path / "net_best.pth")
    sidecar.write(str(tmp_path / "net_best.pth"),
                  sidecar.dope_meta("cube", 128, "imagenet", 0.12, [10, 8, 6], [160, 120]))
    assert h.run_convert(tmp_path / "net_best.pth", tmp_path / "m" / "x.pth", to="modern",
                         strip_prefix=True) == 0
    meta = json.loads((tmp_path / "m" / "x.json").read_text())
    before = sidecar.read(str(tmp_path / "net_best.pth"))
    assert meta["decode"] == before["decode"] and meta["normalization"]["name"] == "imagenet"
    assert meta["object"] == "cube" and meta["weights"] == "x.pth" and meta["key_prefix"] == ""


def test_imagenet_weights_are_folded_for_the_nodes_input(tmp_path, dope_state):
    """Weights trained on ImageNet-normalised input, converted for the node (which feeds
    (x - 0.5) / 0.5): same trunk features away from the border, the sidecar says so."""
    import json
    from pose_train.dope.augment import NORMALIZATIONS
    from pose_train.compat.fold import normalize
    from pose_train_py27 import sidecar
    sidecar.write(str(tmp_path / "src.pth"),     # what train dope --normalize imagenet writes
                  sidecar.dope_meta("cube", 400, NORMALIZATIONS["imagenet"], 0.5, [10, 8, 6],
                                    [640, 480]))
    folded, _ = melodic(tmp_path, dope_state)
    meta = json.loads((tmp_path / "src.pth.json").read_text())
    norm = meta["normalization"]
    assert norm["name"] == "ros" and norm["folded_from"] == "imagenet"
    assert norm["fold_rel_diff"]["64_px_from_edge"] < 1e-5 < norm["fold_rel_diff"]["0_px_from_edge"]
    trained, node = DopeNetwork(stages=1).eval(), DopeNetwork(stages=1).eval()
    trained.load_state_dict(dope_state)
    node.load_state_dict({k[len("module."):]: v for k, v in folded.items()})
    image = torch.rand(1, 3, 192, 192)
    with torch.no_grad():
        a = trained.vgg(normalize(image, NORMALIZATIONS["imagenet"]))[..., 8:-8, 8:-8]
        b = node.vgg(normalize(image, NORMALIZATIONS["ros"]))[..., 8:-8, 8:-8]
    assert (a - b).abs().max() < 1e-5 * a.abs().max()
    assert not torch.equal(folded["module.vgg.0.weight"], dope_state["vgg.0.weight"])


def test_out_in_a_folder_not_made_yet(tmp_path, dope_state):
    """It was refused ("cannot write it (No such file or directory)") where export made it."""
    torch.save(dope_state, tmp_path / "d.pth")
    assert h.run_convert(tmp_path / "d.pth", tmp_path / "new" / "deep" / "n.pth") == 0
    written = torch.load(tmp_path / "new" / "deep" / "n.pth", weights_only=True)
    assert sorted(k.replace("module.", "") for k in written) == sorted(dope_state)
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(UserError):
        h.run_convert(tmp_path / "junk.pth", tmp_path / "other" / "n.pth")
    assert not (tmp_path / "other").exists()     # a failed run leaves no folder behind


def test_an_out_that_is_a_folder_is_refused_before_loading(tmp_path, dope_state):
    torch.save(dope_state, tmp_path / "d.pth")
    for out in (tmp_path, str(tmp_path / "new") + "/"):
        with pytest.raises(UserError, match="is a folder; pass the file to write, e.g.") as refused:
            h.run_convert(tmp_path / "d.pth", out)
        # The example is a name the run would take (it named the source, then refused as such).
        assert str(refused.value).endswith(os.path.join(str(out), "d_melodic.pth")), refused.value
    assert not (tmp_path / "new").exists()
