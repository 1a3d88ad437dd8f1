# -*- coding: utf-8 -*-
"""The Melodic runtime's verifier: load a checkpoint as the ROS node does, compare outputs.

The forward pass is compared with the modern runtime's outputs stored beside the file
(DST.parity.pt, written by pose_train.compat.convert).

``python2.7 -m pose_train_py27 verify --ckpt X [--reference R] [--model M] [--device D]``;
pose-train's own CLI calls ``main`` with a namespace (the job ``verify-melodic``).
"""
from __future__ import absolute_import, division, print_function

import os
import sys

import torch
import torch.nn as nn

from pose_train_py27.errors import InputError
from pose_train_py27.keys import strip_prefix
from pose_train_py27.nets import create_model

CONSUMERS = {"dope": "dope", "keypoints": "fastpose", "fastpose": "fastpose"}
EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


class VerifyError(InputError):
    """A bad input file or argument: printed as one line, exit code EXIT_BAD_INPUT."""


def _last_conv_out(bare, stage):
    indices = [int(k.split(".")[1]) for k in bare if k.startswith(stage + ".")
               and k.endswith(".weight")]
    return bare["%s.%d.weight" % (stage, max(indices))].shape[0] if indices else None


def infer_model(state_dict):
    """(network name, constructor kwargs) read off a state dict; (None, {}) if unknown."""
    bare = strip_prefix(state_dict)
    if "m1_2.0.weight" in bare and "vgg.0.weight" in bare:
        stages = len([s for s in range(1, 100) if "m%d_2.0.weight" % s in bare])
        return "dope", {"num_belief": _last_conv_out(bare, "m1_2"),
                        "num_affinity": _last_conv_out(bare, "m1_1"), "stages": stages}
    if "conv_out.weight" in bare and "preact.conv1.weight" in bare:
        blocks = set(k.split(".")[2] for k in bare if k.startswith("preact.layer3."))
        arch = "resnet50" if len(blocks) == 6 else "resnet101"
        return "fastpose", {"num_classes": bare["conv_out.weight"].shape[0], "architecture": arch}
    return None, {}


def key_mismatch(module, state_dict):
    """(missing, unexpected) key lists, as a strict load_state_dict would judge them."""
    expected, given = set(module.state_dict().keys()), set(state_dict.keys())
    return sorted(expected - given), sorted(given - expected)


def load_as_consumer(name, state_dict):
    """Build the network and load it strictly the way its ROS consumer does.

    DOPE's node: DataParallel(net).load_state_dict(torch.load(path)) -> keys need 'module.'.
    kp6d: model.load_state_dict(torch.load(path)) -> bare keys. Returns the eval() network.
    """
    _, kwargs = infer_model(state_dict)
    net = create_model(name, **kwargs)
    holder = nn.DataParallel(net) if name == "dope" else net
    missing, unexpected = key_mismatch(holder, state_dict)
    if missing or unexpected:
        raise KeyError("strict load fails: %d missing keys %s, %d unexpected keys %s"
                       % (len(missing), missing[:3], len(unexpected), unexpected[:3]))
    holder.load_state_dict(state_dict)
    return net.eval()


def flat_outputs(out):
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in flat_outputs(item)]
    return [out]


def forward(net, inputs):
    with torch.no_grad():
        return flat_outputs(net(inputs))


def max_abs_diff(outputs, expected):
    if len(outputs) != len(expected):
        raise ValueError("%d outputs, reference has %d" % (len(outputs), len(expected)))
    worst = 0.0
    for got, want in zip(outputs, expected):
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError("output shape %s, reference %s"
                             % (tuple(got.shape), tuple(want.shape)))
        worst = max(worst, float((got.double() - want.double()).abs().max()))
    return worst


def load_checked(path):
    """Refuse by reading (pose_train_py27.legacy_format) before torch.load may execute anything.

    A reading check, not only an allowlist unpickler: torch 1.4 aborts the interpreter (a c10
    intrusive_ptr assert, exit 139) when it frees a storage that a truncated file left half
    read, so such a file must be caught before torch touches it.
    """
    try:
        from pose_train_py27.legacy_format import CheckpointError, check_for_torch14
    except ImportError:
        # Loading without the check would let the file's pickle run code: refuse instead.
        raise VerifyError("this runtime lacks pose_train_py27/legacy_format.py, the check that "
                          "runs before torch.load; install the whole pose_train_py27 folder")
    try:
        check_for_torch14(path)
    except CheckpointError as err:
        raise VerifyError("%s: %s" % (path, err))
    except (IOError, OSError) as err:
        raise VerifyError("%s: cannot read it (%s)" % (path, err))
    return torch.load(path, map_location="cpu")


def load_failure(err):
    """One line saying why torch could not load a file, without torch's advice to retry with
    weights_only=False: for a file that is not plain weights that advice runs its code."""
    text = str(err)
    if isinstance(err, EOFError) or "Ran out of input" in text:
        return "it ends early: empty, or cut short while being copied"
    if "Weights only load failed" not in text and any(
            sign in text for sign in ("Unsupported operand", "invalid load key", "could not find MARK")):
        return "its bytes are not a torch file"
    if "Weights only load failed" in text:
        detail = [l.strip() for l in text.split("WeightsUnpickler error:", 1)[-1].splitlines()
                  if l.strip() and not l.startswith("Check the documentation")]
        return "its pickle is not plain weights data (%s)" % (detail[0] if detail else "unknown")
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def load_weights_file(path):
    """A weights file in whichever runtime this is, never running its code: a torch with
    ``weights_only`` (>= 1.13) uses that loader (any format it reads); torch 1.4 load_checked."""
    import inspect
    signature = getattr(inspect, "signature", None)   # Python 2 has none: torch 1.4 then
    if signature is None or "weights_only" not in signature(torch.load).parameters:
        return load_checked(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (IOError, OSError) as err:
        raise VerifyError("%s: cannot read it (%s)" % (path, err))
    except Exception as err:   # pickle, zip and weights_only errors share no base class
        raise VerifyError("%s: not a loadable weights file (%s)" % (path, _why_not(path, err)))


def _why_not(path, err):
    """A torch file starts with a pickle's PROTO opcode (legacy format) or a zip's "PK"."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except (IOError, OSError):
        head = b""
    if len(head) == 2 and head[:1] != b"\x80" and head != b"PK":
        return "its bytes are not a torch file"
    return load_failure(err)


# GPU kernels round differently from the CPU that made the reference.
GPU_TOLERANCE = 1e-3


def verify(ckpt, reference=None, model="auto", device="cpu"):
    """Return (exit code, one-line report) for CKPT against its parity reference."""
    state_dict = load_checked(ckpt)
    if not isinstance(state_dict, dict):
        raise VerifyError("%s: holds a %s, not a state dict" % (ckpt, type(state_dict).__name__))
    ref = load_checked(reference) if reference and os.path.exists(reference) else None
    name = CONSUMERS.get(model) or (ref or {}).get("model") or infer_model(state_dict)[0]
    if name not in ("dope", "fastpose"):
        raise VerifyError("%s: cannot tell which network it is for; pass --model dope|keypoints"
                          % (ckpt,))
    try:
        net = load_as_consumer(name, state_dict)
    except (KeyError, RuntimeError) as err:
        return EXIT_MISMATCH, "FAIL %s (%s): %s" % (ckpt, name, str(err).strip().splitlines()[0])
    if ref is None:
        return EXIT_OK, ("OK %s (%s): strict load passed; no parity reference at %s, outputs not "
                         "compared" % (ckpt, name, reference))
    net = net.to(device)
    try:
        outputs = [t.cpu() for t in forward(net, ref["input"].to(device))]
        diff = max_abs_diff(outputs, ref["outputs"])
        seen = ""
        if "image" in ref:   # a real frame through the node's own preprocessing, too
            x, how = node_input(ref["image"])
            image_out = [t.cpu() for t in forward(net, x.to(device))]
            image_diff = max_abs_diff(image_out, ref["image_outputs"])
            diff = max(diff, image_diff)
            seen = "; a %dx%d frame through %s: %.3g" % (
                ref["image"].shape[1], ref["image"].shape[0], how, image_diff)
    except ValueError as err:
        return EXIT_MISMATCH, "FAIL %s (%s): %s" % (ckpt, name, err)
    tol = float(ref.get("tolerance", 1e-5))
    if device != "cpu":
        tol = max(tol, GPU_TOLERANCE)
    verdict, code = ("OK", EXIT_OK) if diff <= tol else ("FAIL", EXIT_MISMATCH)
    return code, ("%s %s (%s, torch %s): strict load passed, max |diff| %.3g vs modern outputs "
                  "(tolerance %g)%s" % (verdict, ckpt, name, torch.__version__, diff, tol, seen))


def node_input(image):
    """A uint8 (H, W, 3) RGB frame as DOPE's ROS node feeds it to the network: torchvision's
    ToTensor, then Normalize with mean and std 0.5 (the frame is already at network size).
    Returns (NCHW tensor, how). Where torchvision is missing (the modern image) the same
    arithmetic runs in torch."""
    try:
        from PIL import Image
        from torchvision import transforms
    except ImportError:
        x = image.permute(2, 0, 1).float().div(255.0)
        return ((x - 0.5) / 0.5).unsqueeze(0), "ToTensor + Normalize(0.5, 0.5) in torch"
    pipe = transforms.Compose([transforms.ToTensor(),
                               transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    return pipe(Image.fromarray(image.numpy())).unsqueeze(0), \
        "the node's ToTensor + Normalize(0.5, 0.5)"


def _parse(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m pose_train_py27")
    sub = parser.add_subparsers(dest="command")
    cmd = sub.add_parser("verify", help="load a converted checkpoint as ROS Melodic does")
    cmd.add_argument("--ckpt", required=True)
    cmd.add_argument("--reference", default=None, help="default: CKPT.parity.pt")
    cmd.add_argument("--model", default="auto", choices=["auto", "dope", "keypoints"])
    cmd.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                     help="run the forward pass on the GPU, as a GPU Melodic node would")
    args = parser.parse_args(argv)
    if args.command != "verify":
        parser.error("the only command is 'verify'")
    return args


def _device(args):
    if getattr(args, "device", None):
        return args.device
    return "cuda" if getattr(args, "gpus", 0) else "cpu"


def main(args=None):
    """``python2.7 -m pose_train_py27 verify --ckpt X [--reference R] [--model M] [--device D]``,
    or a namespace with those attributes (the pose-train CLI). Returns the exit code."""
    if args is None:
        args = _parse(sys.argv[1:])
    reference = args.reference or str(args.ckpt) + ".parity.pt"
    try:
        code, line = verify(args.ckpt, reference, args.model or "auto", _device(args))
    except VerifyError as err:
        code, line = EXIT_BAD_INPUT, "verify: error: %s" % (err,)
    print(line, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
