"""Reading files without running them: the scanner, bad files, inspect, the legacy writer."""
import collections
import io
import os
import pickle
import zipfile

import pytest
import torch

import compat_helpers as h
from pose_train_py27 import legacy_format as lf
from pose_train.training.legacy_writer import legacy_bytes, save_legacy
from pose_train.cli import main as cli_main


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def run_cli(argv, capsys):
    """pose-train ... --local; returns (exit code, stdout, stderr lines)."""
    with pytest.raises(SystemExit) as exc:
        cli_main(list(argv) + ["--local"])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exc.value.code, out, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def evil_files(tmp_path):
    """Pickles that call os.system in each flavour: protocols 0/2/4, legacy and zip."""
    marker = str(tmp_path / "PWNED")
    files = {}
    for protocol in (0, 2, 4):
        files["legacy-p%d" % protocol] = tmp_path / ("p%d.pth" % protocol)
        files["legacy-p%d" % protocol].write_bytes(h.evil_legacy_bytes("touch " + marker, protocol))
    header = io.BytesIO()
    for value in (lf.LEGACY_MAGIC, lf.LEGACY_PROTOCOL_VERSION):
        pickle.dump(value, header, protocol=2)
    files["inst-p0"] = tmp_path / "inst.pth"  # protocol 0 INST: no GLOBAL opcode at all
    files["inst-p0"].write_bytes(header.getvalue() + b"(dp0\n." + b"(S'touch %s'\nios\nsystem\n."
                                 % marker.encode() + b"(lp0\n.")
    def text(value):
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw
    files["dotted-p4"] = tmp_path / "dotted.pth"  # protocol 4: "torch" + "os.system" = os.system
    files["dotted-p4"].write_bytes(
        header.getvalue() + pickle.dumps({}, protocol=2) + b"\x80\x04" + text("torch")
        + text("os.system") + b"\x93" + text("touch " + marker) + b"\x85R." + pickle.dumps([]))
    files["sys_info"] = tmp_path / "sysinfo.pth"  # the call hides in the third header pickle
    files["sys_info"].write_bytes(h.evil_legacy_bytes("touch " + marker, in_header=True))
    files["zip"] = tmp_path / "evil.zip.pth"
    torch.save({"w": torch.ones(2), "x": Evil(marker)}, files["zip"])
    return files, marker


def test_scanner_names_os_system_in_every_flavour(evil_files):
    files, marker = evil_files
    for name, path in files.items():
        scan = lf.scan_file(str(path))
        assert any(lf.is_dangerous(g) for g in scan.globals), (name, scan.globals)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("command", [["convert", "--to", "melodic"], ["convert", "--to", "modern"],
                                     ["inspect"], ["convert", "--to", "melodic", "--trust", "os",
                                                   "--trust", "builtins", "--trust", "torch"]])
def test_os_system_refused_one_line_nothing_executed(evil_files, tmp_path, capsys, command):
    files, marker = evil_files
    for name, path in files.items():
        argv = command[:1] + [str(path)] + command[1:]
        if command[0] == "convert":
            argv += ["--out", str(tmp_path / "out.pth")]
        code, _out, err = run_cli(argv, capsys)
        assert code != 0 and len(err) == 1 and str(path) in err[0], (name, err)
        assert "system" in err[0]
    assert not os.path.exists(marker)


def test_bad_files_one_line_each(tmp_path, capsys):
    files, marker = h.bad_files(str(tmp_path))
    files["empty"] = str(tmp_path / "empty.pth")
    open(files["empty"], "wb").close()
    zip_cut = tmp_path / "cut.zip.pth"
    torch.save({"w": torch.ones(10000)}, zip_cut)
    zip_cut.write_bytes(zip_cut.read_bytes()[:20000])
    files["truncated-zip"] = str(zip_cut)
    del files["zipfile"]  # a healthy zip: fine for convert, refused only by the legacy verifier
    for name, path in files.items():
        for argv in (["inspect", path], ["convert", path, "--out", str(tmp_path / "o.pth")]):
            code, _out, err = run_cli(argv, capsys)
            assert code == 2 and len(err) == 1 and path in err[0], (name, argv, err)
    assert not os.path.exists(marker)


def test_legacy_check_refuses_zip_and_new_protocol(tmp_path):
    zpath = tmp_path / "z.pth"
    torch.save({"w": torch.ones(2)}, zpath)
    with pytest.raises(lf.CheckpointError, match="zipfile checkpoint.*--to melodic"):
        lf.check_for_torch14(str(zpath))
    p4 = tmp_path / "p4.pth"
    torch.save({"w": torch.ones(2)}, p4, pickle_protocol=4, _use_new_zipfile_serialization=False)
    with pytest.raises(lf.CheckpointError, match="protocol 4"):
        lf.check_for_torch14(str(p4))


def test_stack_global_built_from_non_constants_is_not_trusted():
    # protocol 4: STACK_GLOBAL whose module name comes from a call, not a string constant
    data = (b"\x80\x04" + pickle.GLOBAL + b"builtins\nstr\n" + b"\x8c\x02os" + b"\x85R"
            + b"\x8c\x06system\x93.")
    scan = lf.scan_pickle(io.BytesIO(data))
    assert "<computed global>" in scan.globals


def test_writer_is_deterministic_and_torch_reads_it(tmp_path):
    state = collections.OrderedDict([("a", torch.randn(3, 4).t()), ("b", torch.tensor(7)),
                                     ("c", torch.zeros(0)), ("d", torch.tensor([True]))])
    assert legacy_bytes(state) == legacy_bytes(collections.OrderedDict(state))
    save_legacy(state, tmp_path / "w.pth")
    scan = lf.check_for_torch14(str(tmp_path / "w.pth"))
    assert scan.protocol == 2 and scan.rebuild_arg_counts == {6}
    loaded = torch.load(tmp_path / "w.pth", weights_only=True)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_inspect_reports_format_globals_prefix_and_runtimes(tmp_path, capsys):
    state = {"module.conv.weight": torch.ones(2, 3, dtype=torch.float16)}
    torch.save({"model": state, "epoch": 2}, tmp_path / "z.pth")
    code, out, _ = run_cli(["inspect", str(tmp_path / "z.pth")], capsys)
    assert code == 0
    for expected in ("zipfile", "archive version 3", "pickle protocol: 2",
                     "torch._utils._rebuild_tensor_v2", "1 HalfStorage", "key 'model'",
                     "'module.' on every key", "modern runtime (torch 2.x): yes",
                     "legacy runtime (Python 2.7 + torch 1.4, ROS Melodic): no: a zipfile"):
        assert expected in out, expected


def test_inspect_explains_numpy2_and_pathlib_for_py2(tmp_path, capsys):
    import pathlib

    import numpy as np
    torch.save({"w": torch.ones(1), "n": np.ones(2), "p": pathlib.PurePosixPath("/x")},
               tmp_path / "l.pth", _use_new_zipfile_serialization=False)
    code, out, _ = run_cli(["inspect", str(tmp_path / "l.pth")], capsys)
    assert code == 0 and "numpy 2 name" in out and "no pathlib" in out


def test_zip_missing_storage_member(tmp_path):
    good = tmp_path / "g.pth"
    torch.save({"w": torch.ones(2)}, good)
    bad = tmp_path / "b.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            if "/data/" not in item.filename:
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(lf.CheckpointError, match="storage 0 is missing"):
        lf.scan_file(str(bad))


def test_tar_era_file_is_named(tmp_path, capsys):
    import tarfile
    path = tmp_path / "old.tar.pth"
    member = tmp_path / "pickle"
    member.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    with tarfile.open(path, "w") as tar:
        tar.add(member, arcname="pickle")
    code, out, _ = run_cli(["inspect", str(path)], capsys)
    assert code == 0 and "tar (torch <= 0.3)" in out and "modern runtime (torch 2.x): " in out
    assert "legacy runtime (Python 2.7 + torch 1.4, ROS Melodic): no" in out


class _CallsOnLoad:
    """Its pickle calls ``func(code)`` on load: the issue's timeit / cProfile repro."""

    def __init__(self, func, marker):
        self.func, self.marker = func, marker

    def __reduce__(self):
        return (self.func, ("open(%r, 'w').close()" % self.marker,))


@pytest.mark.parametrize("func", ["timeit.timeit", "cProfile.run"])
def test_code_runners_missing_from_any_deny_list_are_refused_without_advice(tmp_path, capsys, func):
    import importlib
    module, _, name = func.rpartition(".")
    marker = str(tmp_path / "ran")
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "x": _CallsOnLoad(getattr(importlib.import_module(module), name),
                                                      marker)}, path)
    for argv in (["inspect", str(path)], ["convert", str(path), "--to", "melodic"],
                 ["convert", str(path), "--to", "melodic", "--trust", "test_compat_format"]):
        code, out, err = run_cli(argv, capsys)
        text = out + "\n".join(err)
        assert func in text and "calls" in text and "nothing was executed" in text, text
        assert "rerun with --trust" not in text
        assert not os.path.exists(marker)
