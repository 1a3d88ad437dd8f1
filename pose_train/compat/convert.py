"""pose-train convert: checkpoints between modern torch and ROS Melodic (torch 1.4, py2.7).

--to melodic: a flat state dict of fp32/int/bool tensors, legacy format, pickle protocol 2,
  keys laid out as the consumer loads them (DOPE's node: ``module.``; kp6d: bare).
--to modern: a zipfile .pth or a .safetensors, loadable with torch.load(weights_only=True).
--verify (melodic): also writes DST.parity.pt (fixed input + this runtime's outputs) for
  the legacy verifier (pose_train_py27.verify), which the launcher runs in the legacy image.
"""
import collections
import os
import subprocess
import sys
import time

import torch

from pose_train import environment
from pose_train_py27 import verify as melodic
from pose_train_py27.legacy_format import CheckpointError, check_for_torch14
from pose_train.training.legacy_writer import write_legacy
from pose_train.compat.loading import load_checkpoint
from pose_train.compat.state_dict import (find_state_dict, flatten, for_melodic, for_modern, is_tensor_like,
                               set_prefix, strip_compile_prefix)
from pose_train.compat.node_config import write_node_config
from pose_train_py27.dope_io import parse_dimensions
from pose_train.errors import UserError
from pose_train.jobs.checkpoint_jobs import default_convert_out
from pose_train.files import atomic_write, job_folder, read_sidecar as read_upgraded, write_sidecar
from pose_train_py27 import sidecar
from pose_train_py27.errors import InputError

PARITY_SUFFIX = ".parity.pt"
PARITY_TOLERANCE = 1e-5
LEGACY_PYTHON_ENV = environment.LEGACY_PYTHON
_CONSUMER = {"dope": "dope", "keypoints": "fastpose", "auto": None}


def _say(message):
    print("convert: %s" % message, file=sys.stderr)


def read_weights(src, trust):
    """Load SRC and return (flat state dict, note on where it came from)."""
    obj, scan = load_checkpoint(src, trust)
    try:
        state, where, left = find_state_dict(obj)
    except InputError as err:
        raise UserError("%s: %s" % (src, err))
    flat = flatten(state)
    # Plain values beside the tensors (epoch, names) are metadata no consumer loads.
    left += [k for k, v in flat.items() if not is_tensor_like(v)]
    state = collections.OrderedDict((k, v) for k, v in flat.items() if is_tensor_like(v))
    note = "%s (%s, pickle protocol %d) weights from %s" % (src, scan.format, scan.protocol, where)
    if left:
        note += "; dropped %s" % ", ".join(left)
    return state, note


def resolve_network(state, model):
    """The network the keys belong to ('dope', 'fastpose' or None), checked against --model."""
    if model not in _CONSUMER:
        raise UserError("--model must be dope, keypoints or auto, got %r" % (model,))
    found, _ = melodic.infer_model(state)
    wanted = _CONSUMER[model]
    if wanted and found and wanted != found:
        raise UserError("--model %s, but the keys are those of %s" % (model, found))
    return wanted or found


def check_against_network(name, state):
    """Keys and shapes as a strict load_state_dict sees them; meta tensors, so it is free."""
    _, kwargs = melodic.infer_model(state)
    with torch.device("meta"):
        net = melodic.create_model(name, **kwargs)
    holder = torch.nn.DataParallel(net) if name == "dope" else net
    missing, unexpected = melodic.key_mismatch(holder, state)
    if missing or unexpected:
        raise UserError("keys do not match %s: %d missing (%s), %d unexpected (%s)"
                        % (name, len(missing), ", ".join(missing[:3]), len(unexpected),
                           ", ".join(unexpected[:3])))
    for key, param in holder.state_dict().items():
        if tuple(param.shape) != tuple(state[key].shape):
            raise UserError("tensor %r has shape %s; %s expects %s"
                            % (key, tuple(state[key].shape), name, tuple(param.shape)))


def to_melodic(state, model="auto", keep_prefix=False, strip_prefix=False):
    """Return (consumer-ready flat state dict, network name or None)."""
    if keep_prefix and strip_prefix:
        raise UserError("--keep_prefix and --strip_prefix contradict each other; pick one")
    state = strip_compile_prefix(state)
    state = collections.OrderedDict((k, for_melodic(k, v)) for k, v in state.items())
    name = resolve_network(state, model)
    if strip_prefix:
        state = set_prefix(state, False)
    elif not keep_prefix and name:
        state = set_prefix(state, name == "dope")
    if name and not keep_prefix and not strip_prefix:
        check_against_network(name, state)
    return state, name


def parity_reference(state, name, size=64):
    """The fixed input and this runtime's outputs for the converted weights."""
    net = melodic.load_as_consumer(name, state)
    inputs = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    outputs = melodic.forward(net, inputs)
    _, kwargs = melodic.infer_model(state)
    ref = collections.OrderedDict([
        ("format", "pose-train-parity/1"), ("model", name), ("kwargs", kwargs),
        ("input", inputs), ("outputs", outputs), ("tolerance", PARITY_TOLERANCE),
        ("torch", str(torch.__version__))])
    if name == "dope":
        ref["image"], ref["image_outputs"] = _frame_parity(net, size)
    return ref


def _frame_parity(net, size):
    """A synthetic DOPE frame and the outputs for it through pose-train's own preprocessing
    (ros normalisation); the verifier feeds the same frame through the node's."""
    import numpy as np
    from pose_train.dope.augment import NORMALIZATIONS, normalize
    from pose_train.dope.geometry import intrinsics_matrix
    from pose_train.dope.synth import render_sample
    K = intrinsics_matrix(0.9 * size, 0.9 * size, size / 2.0, size / 2.0)
    image, _ = render_sample(np.random.default_rng(0), size, size, "cube", K)
    frame = torch.from_numpy(np.ascontiguousarray(image))
    x = normalize(frame.float().div(255.0).unsqueeze(0), NORMALIZATIONS["ros"])
    return frame, melodic.forward(net, x.permute(0, 3, 1, 2).contiguous())


def write_melodic(state, out):
    def check(tmp):
        try:
            check_for_torch14(tmp)  # the same static check the legacy verifier starts with
        except CheckpointError as err:
            raise UserError("%s: the written file would be refused by torch 1.4 (%s); please "
                            "report this" % (out, err))
    atomic_write(out, lambda f: write_legacy(state, f), check=check)


def write_modern(state, out, fmt, metadata=None):
    if fmt == "safetensors":
        from safetensors.torch import save
        seen, tensors = set(), collections.OrderedDict()
        for key, tensor in state.items():
            # safetensors refuses tensors that share memory (tied weights): give each its own.
            tensors[key] = tensor.clone() if tensor.data_ptr() in seen else tensor
            seen.add(tensor.data_ptr())
        data = save(tensors, metadata=dict(metadata or {}, format="pt"))
        atomic_write(out, lambda f: f.write(data))
        return

    def reads_back(tmp):
        if list(torch.load(tmp, map_location="cpu", weights_only=True)) != list(state):
            raise UserError("%s: the written file does not read back with weights_only=True"
                            % (out,))
    atomic_write(out, lambda f: torch.save(state, f), check=reads_back)


def read_sidecar(src):
    """The upgraded json beside SRC (net_epoch_XX.json) as a dict, or None."""
    return read_upgraded(src) or None


def _for_the_node(state, name, src):
    """DOPE weights trained on another normalisation than the node's (x - 0.5) / 0.5 get it
    folded into their first convolution; returns (state, sidecar updates)."""
    norm = (read_sidecar(src) or {}).get("normalization") or {}
    if name != "dope" or norm.get("name") in (None, "ros"):
        return state, {}
    from pose_train.compat.fold import ROS, fold_dope
    state, facts = fold_dope(state, norm)
    _say("%s was trained with %s normalisation; folded it into vgg.0 for the node's 0.5/0.5 "
         "input. Zero padding makes the border differ; trunk features off by (%% of their range) "
         "%s" % (src, norm.get("name"), ", ".join(
             "%.2g%% %s" % (100 * v, k.replace("_", " "))
             for k, v in facts["fold_rel_diff"].items())))
    return state, {"normalization": dict(ROS, name="ros", **facts)}


def copy_sidecar(src, out, updates=None):
    """net_epoch_XX.json (normalisation, object, key prefix) travels with the weights: the
    melodic file itself can hold nothing but the state dict the ROS node loads."""
    target = sidecar.path_of(out)
    meta = read_sidecar(src)
    if meta is None or os.path.abspath(sidecar.path_of(src)) == os.path.abspath(target):
        return
    meta.pop("weights_sha256", None)    # the source's bytes, not these
    meta.update(weights=os.path.basename(out), converted_from=os.path.basename(src), **(updates or {}))
    write_sidecar(out, meta)
    _say("copied %s -> %s" % (sidecar.path_of(src), target))


def verifier_argv(python_argv, ckpt, reference, model="auto"):
    """The legacy verifier's command line after an interpreter prefix (local or docker)."""
    return list(python_argv) + ["-m", "pose_train_py27", "verify", "--ckpt", ckpt,
                                "--reference", reference, "--model", model]


def run_local_verifier(out, model):
    """--verify without Docker: run pose_train_py27's verifier under POSE_TRAIN_LEGACY_PYTHON if set."""
    python = os.environ.get(LEGACY_PYTHON_ENV)
    reference = out + PARITY_SUFFIX
    if not python:
        # A script reads the exit code: --verify that could not run is not a success.
        raise UserError("NOT VERIFIED: %s is written, and its parity reference %s, but --verify "
                        "needs the legacy runtime (Python 2.7 + torch 1.4): run 'pose-train "
                        "verify %s' (the legacy image), or set %s to a python2.7 with torch 1.4 "
                        "and rerun" % (out, reference, out, LEGACY_PYTHON_ENV), code=3)
    root = os.path.dirname(os.path.dirname(os.path.abspath(melodic.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = verifier_argv([python], os.path.abspath(out), os.path.abspath(reference), model)
    return subprocess.call(argv, cwd=root, env=env)


def convert(src, to, out, model="auto", keep_prefix=False, strip_prefix=False, verify=False,
            fmt="pth", trust=(), dimensions=None):
    """Convert SRC into OUT; returns the exit code of the verifier (0 when not run)."""
    started = time.time()
    state, note = read_weights(src, trust)
    _say(note)
    if to == "modern":
        if strip_prefix:
            state = set_prefix(state, False)
        state = collections.OrderedDict((k, for_modern(k, v)) for k, v in state.items())
        write_modern(state, out, fmt, {"source": os.path.basename(src)})
        # The decode settings, object and normalisation travel as with --to melodic: without
        # them infer would decode with the node's defaults and say nothing.
        copy_sidecar(src, out, {"key_prefix": "module." if any(k.startswith("module.") for k in state)
                                else "", "serialization": "%s (torch >= 1.6)" % fmt})
        if verify:
            _say("--verify checks --to melodic files; nothing to verify for --to modern")
        _say("wrote %s (%s, %d tensors) in %.2f s" % (out, fmt, len(state), time.time() - started))
        return 0
    state, name = to_melodic(state, model, keep_prefix, strip_prefix)
    state, facts = _for_the_node(state, name, src)
    write_melodic(state, out)
    copy_sidecar(src, out, facts)
    if name == "dope":
        write_node_config(out, read_sidecar(src), dimensions, say=_say)
    _say("wrote %s (legacy format, protocol 2, %s, %d tensors, %s keys) in %.2f s"
         % (out, name or "unknown network", len(state),
            "module." if any(k.startswith("module.") for k in state) else "bare",
            time.time() - started))
    if not verify:
        return 0
    if not name:
        raise UserError("%s: --verify needs to know the network; pass --model dope|keypoints" % src)
    try:
        reference = parity_reference(state, name)
    except (KeyError, RuntimeError) as err:
        raise UserError("%s: %s (with --keep_prefix/--strip_prefix the keys are yours to get "
                        "right)" % (out, str(err).strip("\"'").splitlines()[0]))
    atomic_write(out + PARITY_SUFFIX, lambda f: write_legacy(reference, f))
    if os.environ.get(environment.LOCAL) == "1" and not os.environ.get(LEGACY_PYTHON_ENV):
        _say("parity reference written to %s%s; the legacy verifier checks it next"
             % (out, PARITY_SUFFIX))
        return 0
    return run_local_verifier(out, model)


def main(args):
    """Job entry (declared in pose_train.jobs.checkpoint_jobs): args has src, to, out, model, keep_prefix,
    strip_prefix, verify, format, trust."""
    to = args.to
    if not args.out:
        raise UserError("convert needs --out")
    if os.path.isdir(args.out) or str(args.out).endswith(("/", os.sep)):
        name = os.path.basename(default_convert_out(str(args.src), to, args.format))
        raise UserError("--out %s is a folder; pass the file to write, e.g. %s" % (
            args.out, os.path.join(str(args.out), name)))
    if os.path.abspath(args.out) == os.path.abspath(args.src):
        raise UserError("%s: --out is the source file; choose another name" % (args.out,))
    if args.dimensions:
        parse_dimensions(args.dimensions)      # a bad value fails before anything is written
    # --out in a folder not made yet: made, as export onnx and the --outf jobs do, and removed
    # again when the conversion fails before writing into it.
    with job_folder(os.path.dirname(os.path.abspath(str(args.out))), flag="--out",
                    shown=str(args.out)):
        return convert(str(args.src), to, str(args.out), str(args.model or "auto"),
                       bool(args.keep_prefix), bool(args.strip_prefix), bool(args.verify),
                       str(args.format or "pth").lower(), tuple(args.trust or ()), args.dimensions)
