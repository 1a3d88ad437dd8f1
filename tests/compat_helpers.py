"""Checks that run the real legacy runtime (Python 2.7 + torch 1.4), driven by an argv prefix.

Each ``check_*`` takes ``python_argv``, the command that starts the legacy interpreter:
  locally:  legacy_python_argv()            -> ["/path/to/python2.7"] (POSE_TRAIN_LEGACY_PYTHON)
  docker:   docker_python_argv(image, tmp)  -> ["docker", "run", "--rm", "--entrypoint",
            "python2.7", ..., image] with REPO and tmp mounted at their own paths, -w REPO
and ``workdir``, a folder that the interpreter sees at the same path. The checks run from
REPO so ``-m pose_train_py27`` imports this checkout's package; each raises
AssertionError carrying the legacy side's output.
"""
import collections
import json
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # plain `pytest` without an installed checkout, or run as a script
    sys.path.insert(0, REPO)
LEGACY_ENV = "POSE_TRAIN_LEGACY_PYTHON"
SKIP_REASON = ("legacy runtime not available: set POSE_TRAIN_LEGACY_PYTHON to a python2.7 with "
               "torch 1.4, or run the docker-marked tests")
PY2_FOLDER = "pose_train_py27"   # the folder the legacy image copies whole


def legacy_python_argv():
    """[interpreter] from POSE_TRAIN_LEGACY_PYTHON, or pytest.skip saying how to enable it."""
    python = os.environ.get(LEGACY_ENV)
    if not python:
        pytest.skip(SKIP_REASON)
    return [python]


def docker_python_argv(image, workdir):
    """``docker run`` prefix for the legacy image: its entrypoint replaced by python2.7,
    this checkout (read-only) and ``workdir`` mounted at their host paths, host uid/gid."""
    return ["docker", "run", "--rm", "--entrypoint", "python2.7",
            "--user", "%d:%d" % (os.getuid(), os.getgid()), "-e", "PYTHONDONTWRITEBYTECODE=1",
            "-v", "%s:%s:ro" % (REPO, REPO), "-v", "%s:%s" % (workdir, workdir), "-w", REPO,
            image]


def run_legacy(python_argv, args, check=True):
    """Run the legacy interpreter with ``args`` from the repo root; returns CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(list(python_argv) + list(args), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("legacy run %s failed (%d):\n%s\n%s"
                             % (args[:3], proc.returncode, proc.stdout, proc.stderr))
    return proc


def run_convert(src, out, to="melodic", **kw):
    """Run pose-train convert in this process (the modern side), returning its exit code."""
    from pose_train.compat.convert import main
    from pose_train.jobs import namespace
    return main(namespace("convert", src=str(src), to=to, out=str(out), **kw))


def check_byte_compile(python_argv):
    """Every module of the Python-2.7 folder compiles under Python 2.7 (no .pyc written)."""
    code = ("import os, sys\nn = 0\nfor d, _, names in os.walk(sys.argv[1]):\n"
            "    for name in names:\n        if name.endswith('.py'):\n"
            "            p = os.path.join(d, name)\n            compile(open(p).read(), p, 'exec')\n"
            "            n += 1\nprint('compiled %d' % n)")
    proc = run_legacy(python_argv, ["-c", code, PY2_FOLDER])
    modules = [n for _, _, names in os.walk(os.path.join(REPO, PY2_FOLDER)) for n in names
               if n.endswith(".py")]
    assert len(modules) >= 4 and "compiled %d" % len(modules) in proc.stdout, proc.stdout


def _convert_for_the_verifier(src, dst, **kw):
    """convert --verify with no legacy runtime named: the file and its parity reference are
    written and the job says NOT VERIFIED (exit 3); the caller runs the verifier itself."""
    from pose_train.errors import UserError
    with pytest.raises(UserError, match="NOT VERIFIED") as failed:
        run_convert(src, dst, verify=True, **kw)
    assert failed.value.code == 3


def check_dope_parity(python_argv, workdir, stages=6):
    """convert --to melodic --verify on a DOPE checkpoint, verified by the legacy runtime."""
    from pose_train.compat.convert import verifier_argv
    from pose_train_py27.nets import DopeNetwork
    torch.manual_seed(0)
    src, dst = os.path.join(workdir, "dope.pth"), os.path.join(workdir, "dope_melodic.pth")
    torch.save(DopeNetwork(stages=stages).state_dict(), src)  # bare keys, zipfile, like Kaggle
    env = os.environ.pop("POSE_TRAIN_LEGACY_PYTHON", None)
    try:
        _convert_for_the_verifier(src, dst)
    finally:
        if env is not None:
            os.environ["POSE_TRAIN_LEGACY_PYTHON"] = env
    proc = run_legacy(python_argv, verifier_argv([], dst, dst + ".parity.pt", "dope"))
    assert proc.stdout.startswith("OK ") and "max |diff|" in proc.stdout, proc.stdout
    assert "torch 1.4" in proc.stdout, proc.stdout
    assert "frame through the node's ToTensor + Normalize(0.5, 0.5)" in proc.stdout, proc.stdout
    # The frame's outputs are really compared: a reference the node's input cannot reproduce fails.
    from pose_train.training.legacy_writer import save_legacy
    ref = torch.load(dst + ".parity.pt", weights_only=True)
    ref["image_outputs"][-1] = ref["image_outputs"][-1] + 0.5
    save_legacy(ref, dst + ".bad.pt")
    bad = run_legacy(python_argv, verifier_argv([], dst, dst + ".bad.pt", "dope"), check=False)
    assert bad.returncode == 1 and "FAIL" in bad.stderr, (bad.stdout, bad.stderr)
    return proc.stdout.strip()


_PY2_WRITE = r"""
import sys, collections, numpy as np, torch
out = sys.argv[1]
state = collections.OrderedDict()
state['conv.weight'] = torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2) / 7.0
state['conv.bias'] = torch.tensor([-1.5, 2.25])
state['bn.num_batches_tracked'] = torch.tensor(5)
state['half'] = torch.arange(4).half()
torch.manual_seed(1)
state['rand'] = torch.randn(3, 5)
ckpt = {'state_dict': state, 'epoch': 7, 'arch': 'toy', 'mean': np.array([0.485, 0.456, 0.406]),
        'blob': '\xff\xfe', 'best': np.float64(0.25)}
torch.save(ckpt, out)
torch.save(state, out + '.sd')
print(torch.__version__)
"""

_PY2_COMPARE = r"""
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
assert list(a.keys()) == list(b.keys()), (list(a.keys()), list(b.keys()))
for k in a:
    assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
print('equal %d' % len(a))
"""


def write_py2_checkpoint(python_argv, workdir):
    """A checkpoint written by torch 1.4 on Python 2.7 (py2 str, numpy, fp16); its path."""
    path = os.path.join(workdir, "py2_ckpt.pth")
    run_legacy(python_argv, ["-c", _PY2_WRITE, path])
    return path


def check_py2_to_modern(python_argv, workdir):
    """A torch 1.4 / Python 2.7 file -> --to modern (.pth, .safetensors) -> weights_only load."""
    src = write_py2_checkpoint(python_argv, workdir)
    expected = collections.OrderedDict([
        ("conv.weight", torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2) / 7.0),
        ("conv.bias", torch.tensor([-1.5, 2.25])), ("bn.num_batches_tracked", torch.tensor(5)),
        ("half", torch.arange(4).half())])
    pth, st = os.path.join(workdir, "modern.pth"), os.path.join(workdir, "modern.safetensors")
    assert run_convert(src, pth, to="modern") == 0
    assert run_convert(src, st, to="modern", format="safetensors") == 0
    from safetensors.torch import load_file
    for loaded in (torch.load(pth, weights_only=True), load_file(st)):
        assert sorted(loaded) == sorted(list(expected) + ["rand"])  # safetensors sorts keys
        for key, value in expected.items():
            assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


def check_round_trip(python_argv, workdir):
    """legacy (torch 1.4) -> modern -> legacy: equal bits in torch 1.4; second lap same bytes."""
    src = write_py2_checkpoint(python_argv, workdir) + ".sd"
    paths = [os.path.join(workdir, name)
             for name in ("rt1.pth", "rt1.legacy", "rt2.pth", "rt2.legacy")]
    assert run_convert(src, paths[0], to="modern") == 0
    assert run_convert(paths[0], paths[1], keep_prefix=True) == 0
    assert run_convert(paths[1], paths[2], to="modern") == 0
    assert run_convert(paths[2], paths[3], keep_prefix=True) == 0
    with open(paths[1], "rb") as a, open(paths[3], "rb") as b:
        assert a.read() == b.read(), "second legacy lap is not byte-identical"
    # melodic output is fp32 by contract: compare in py2 against the fp32 view of the source.
    cast = os.path.join(workdir, "src_fp32.legacy")
    from pose_train.training.legacy_writer import save_legacy
    from pose_train.compat.loading import load_checkpoint
    state, _ = load_checkpoint(src)
    save_legacy(collections.OrderedDict((k, v.float() if v.is_floating_point() else v)
                                        for k, v in state.items()), cast)
    proc = run_legacy(python_argv, ["-c", _PY2_COMPARE, cast, paths[1]])
    assert "equal 5" in proc.stdout, proc.stdout


def bad_files(workdir):
    """{name: path} of files the verifier must refuse; the os.system one would touch a marker."""
    files = {}
    good = os.path.join(workdir, "good.legacy")
    torch.save({"w": torch.ones(1000)}, good, _use_new_zipfile_serialization=False)
    with open(good, "rb") as handle:
        data = handle.read()
    files["truncated"] = os.path.join(workdir, "truncated.pth")
    with open(files["truncated"], "wb") as handle:
        handle.write(data[:-100])
    files["zipfile"] = os.path.join(workdir, "zipfile.pth")
    torch.save({"w": torch.ones(3)}, files["zipfile"])
    files["not_checkpoint"] = os.path.join(workdir, "notes.txt")
    with open(files["not_checkpoint"], "w") as handle:
        handle.write("these are not the weights you are looking for\n")
    files["os_system"] = os.path.join(workdir, "evil.pth")
    marker = os.path.join(workdir, "PWNED")
    with open(files["os_system"], "wb") as handle:
        handle.write(evil_legacy_bytes("touch " + marker))
    files["os_system_in_header"] = os.path.join(workdir, "evil_header.pth")
    with open(files["os_system_in_header"], "wb") as handle:
        handle.write(evil_legacy_bytes("touch " + marker, in_header=True))
    return files, marker


def evil_legacy_bytes(command, protocol=2, in_header=False):
    """A legacy-format torch file whose object pickle (or sys_info header) calls os.system."""
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (command,))

    buf = io.BytesIO()
    sys_info = Evil() if in_header else {"protocol_version": 1001}
    for header in (0x1950a86a20f9469cfc6c, 1001, sys_info):
        pickle.dump(header, buf, protocol=2)
    pickle.dump({} if in_header else {"w": Evil()}, buf, protocol=protocol)
    pickle.dump([], buf, protocol=2)
    return buf.getvalue()


def check_verifier_refuses_bad_files(python_argv, workdir):
    """Each bad file: exit code 2, exactly one line on stderr, nothing executed."""
    files, marker = bad_files(workdir)
    for name, path in sorted(files.items()):
        proc = run_legacy(python_argv, ["-m", "pose_train_py27", "verify", "--ckpt", path,
                                        "--model", "dope"], check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (name, proc.returncode, proc.stdout, proc.stderr)
        assert len(lines) == 1 and path in lines[0], (name, proc.stderr)
    assert not os.path.exists(marker), "the os.system pickle was executed"


def check_verifier_catches_mismatches(python_argv, workdir):
    """A missing key and a tampered parity reference each fail with exit code 1."""
    from pose_train.compat.convert import parity_reference, verifier_argv
    from pose_train.training.legacy_writer import save_legacy
    from pose_train_py27.nets import DopeNetwork
    torch.manual_seed(0)
    state = collections.OrderedDict(("module." + k, v) for k, v in
                                    DopeNetwork(stages=1).state_dict().items())
    ref = parity_reference(state, "dope")
    good, ref_path = os.path.join(workdir, "s1.pth"), os.path.join(workdir, "s1.parity.pt")
    save_legacy(state, good)
    ref["outputs"][0] = ref["outputs"][0] + 1e-3
    save_legacy(ref, ref_path)
    proc = run_legacy(python_argv, verifier_argv([], good, ref_path, "dope"), check=False)
    assert proc.returncode == 1 and "FAIL" in proc.stderr and "max |diff| 0.001" in proc.stderr, \
        proc.stderr
    del state["module.m1_1.8.bias"]
    missing = os.path.join(workdir, "missing.pth")
    save_legacy(state, missing)
    proc = run_legacy(python_argv, verifier_argv([], missing, ref_path, "dope"), check=False)
    assert proc.returncode == 1 and "1 missing keys" in proc.stderr, proc.stderr


def check_keypoints_parity(python_argv, workdir):
    """FastPose (SE-ResNet-50, 3 maps), module.-prefixed source -> bare keys, parity in 1.4."""
    from pose_train.compat.convert import verifier_argv
    from pose_train_py27.nets import FastPose
    torch.manual_seed(0)
    net = FastPose(num_classes=3, architecture="resnet50")
    for name, buf in net.named_buffers():
        if name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)  # non-trivial BN statistics, so eval() mode is exercised
    src, dst = os.path.join(workdir, "kp.pkl"), os.path.join(workdir, "kp_melodic.pkl")
    torch.save(torch.nn.DataParallel(net).state_dict(), src)
    env = os.environ.pop(LEGACY_ENV, None)
    try:
        _convert_for_the_verifier(src, dst)
    finally:
        if env is not None:
            os.environ[LEGACY_ENV] = env
    proc = run_legacy(python_argv, verifier_argv([], dst, dst + ".parity.pt", "keypoints"))
    assert proc.stdout.startswith("OK ") and "(fastpose" in proc.stdout, proc.stdout


def breaker_sources(workdir):
    """{name: (source path, convert kwargs)} for breakers that convert (not those refused)."""
    import numpy as np
    src = {}
    base = collections.OrderedDict([("conv.weight", torch.randn(4, 3, 3, 3)),
                                    ("conv.bias", torch.randn(4))])

    def put(name, obj, **kw):
        path = os.path.join(workdir, "breaker_%s.pth" % name)
        torch.save(obj, path, **kw.pop("save", {}))
        src[name] = (path, kw)
    put("numpy2", {"model": dict(base, arr=np.ones((2, 2), np.float32)), "best": np.float64(1)})
    put("pathlib", {"model": base, "root": __import__("pathlib").Path("/data")})
    put("module", torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), trust=["torch.nn"])
    put("negbit", {"w": torch._neg_view(torch.arange(4.))})
    put("protocol4", base, save={"pickle_protocol": 4})
    put("half_bf16", {"h": torch.ones(3).half(), "b": torch.ones(3).bfloat16()})
    put("views", {"t": torch.arange(12.).view(3, 4).t(), "s": torch.arange(100.)[5:9]})
    return src


def check_breakers_load_in_torch14(python_argv, workdir):
    """Every converted breaker loads in torch 1.4 with the values the modern side wrote."""
    paths, expected = [], {}
    for name, (path, kw) in sorted(breaker_sources(workdir).items()):
        out = path + ".melodic"
        assert run_convert(path, out, **kw) == 0, name
        paths.append(out)
        state = torch.load(out, weights_only=True)
        expected[out] = {k: [str(v.dtype), list(v.shape), float(v.double().sum())]
                         for k, v in state.items()}
    for out in paths:
        got = legacy_load_summary(python_argv, out)
        assert got == expected[out], (out, got, expected[out])


def legacy_load_summary(python_argv, path):
    """{key: [dtype, shape, sum]} of a file as torch 1.4 loads it."""
    code = ("import sys, json, torch\nsd = torch.load(sys.argv[1])\n"
            "print(json.dumps(dict((str(k), [str(v.dtype), list(v.shape), float(v.double().sum())])"
            " for k, v in sd.items())))")
    return json.loads(run_legacy(python_argv, ["-c", code, path]).stdout)



# Every check both runners drive: a local py2.7 (test_compat_legacy) and the legacy image
# (test_docker_legacy).
CHECKS = [check_dope_parity, check_py2_to_modern, check_round_trip, check_verifier_refuses_bad_files,
          check_verifier_catches_mismatches, check_keypoints_parity, check_breakers_load_in_torch14]

if __name__ == "__main__":  # manual run: python tests/compat_helpers.py /path/to/python2.7
    if len(sys.argv) > 1:
        os.environ[LEGACY_ENV] = sys.argv[1]
    sys.exit(pytest.main([os.path.join(REPO, "tests", "test_compat_legacy.py"), "-q"]))
