"""pose-train inspect: what a checkpoint file is and who can load it, read without running it.

Everything up to "loaded:" comes from walking the pickle's opcodes (pose_train_py27.legacy_format);
the tensor summary loads the file with weights_only=True (or the allow-list widened by --trust) only
after that walk found nothing that could run a command.
"""
import collections
import os

from pose_train_py27 import verify as melodic
from pose_train_py27.legacy_format import CheckpointError, check_for_torch14, storage_info
from pose_train.compat.loading import load_checkpoint, scan_or_fail
from pose_train.compat.state_dict import find_state_dict, flatten, key_prefix
from pose_train_py27.errors import InputError

_FORMAT_TEXT = {"zip": "zipfile (torch >= 1.6 default)",
                "legacy": "legacy serialization (torch 0.4 .. 1.5, "
                          "or _use_new_zipfile_serialization=False)",
                "tar": "tar (torch <= 0.3)"}


def _storage_summary(scan):
    counts = collections.Counter()
    elements = 0
    for pid in scan.persistent_ids:
        kind, _key, numel = storage_info(pid)
        if kind:
            counts[kind.rpartition(".")[2]] += 1
            elements += numel if isinstance(numel, int) else 0
    text = ", ".join("%d %s" % (n, kind) for kind, n in sorted(counts.items()))
    return "%d (%s), %s elements" % (sum(counts.values()), text or "none", format(elements, ","))


def _weights_summary(obj):
    state, where, left = find_state_dict(obj)
    state = flatten(state)
    tensors = {k: v for k, v in state.items() if hasattr(v, "dtype") and hasattr(v, "shape")}
    dtypes = collections.Counter(str(v.dtype).replace("torch.", "") for v in tensors.values())
    params = sum(int(v.numel()) if hasattr(v, "numel") else int(v.size) for v in tensors.values())
    prefix = key_prefix(state)
    network, kwargs = melodic.infer_model(tensors)
    lines = ["state dict: %s; %d tensors, %s values, dtypes %s" % (
        where, len(tensors), format(params, ","), dict(sorted(dtypes.items()))),
        "key prefix: %s" % {"module.": "'module.' on every key (DataParallel layout)",
                            "": "none (bare keys)"}.get(prefix, "mixed: some keys have 'module.'"),
        "network: %s" % ("%s %s" % (network, kwargs) if network else "not recognised")]
    if left:
        lines.append("also holds: %s" % ", ".join(left))
    if network == "dope" and prefix != "module.":
        lines.append("note: DOPE's ROS node expects 'module.' keys; convert --to melodic adds them")
    if network == "fastpose" and prefix == "module.":
        lines.append("note: kp6d loads bare keys; convert --to melodic strips 'module.'")
    return lines


def inspect_file(path, trust=()):
    """Return the report as a list of lines; UserError when the file is not a checkpoint."""
    scan = scan_or_fail(path)
    lines = ["file: %s (%s bytes)" % (path, format(os.path.getsize(path), ",")),
             "format: %s" % _FORMAT_TEXT[scan.format]
             + (", archive version %s" % scan.zip_version if scan.format == "zip" else "")]
    if scan.format != "tar":
        extra = "" if scan.rebuild_arg_counts <= set([4, 6]) else \
            " (some carry tensor metadata torch 1.4 cannot read)"
        lines += ["pickle protocol: %d" % scan.protocol,
                  "globals: %s" % (", ".join(scan.globals) or "none"),
                  "storages: %s" % _storage_summary(scan),
                  "tensor rebuilds: %d%s" % (scan.tensor_rebuilds, extra)]
    modern = "yes (weights_only=True)"
    try:
        obj, _ = load_checkpoint(path, trust)
        lines += _weights_summary(obj)
    except InputError as err:
        modern = "no: %s" % str(err).replace(path + ": ", "")
        lines.append("loaded: no")
    if trust and modern.startswith("yes"):
        modern = "yes with --trust %s; see globals above" % " --trust ".join(trust)
    lines += ["modern runtime (torch 2.x): %s" % modern,
              "legacy runtime (Python 2.7 + torch 1.4, ROS Melodic): %s"
              % legacy_verdict(path, scan)]
    return lines


def _py2_problem(name):
    """Why Python 2.7 + numpy 1.16 + torch 1.4 could not import a pickled global, or None."""
    if name.startswith("numpy._core."):
        return "%s is a numpy 2 name; numpy 1.16 cannot import it" % name
    if name.startswith("pathlib."):
        return "%s: Python 2.7 has no pathlib" % name
    if name.startswith(("torch.", "collections.", "numpy.", "__builtin__.", "builtins.",
                        "_codecs.", "argparse.")):
        return None
    return "%s must be importable there" % name


def legacy_verdict(path, scan):
    try:
        check_for_torch14(path)
        return "yes (a weights-only state dict, protocol <= 2)"
    except CheckpointError as err:
        if scan.format != "legacy" or scan.protocol > 2:
            return "no: %s" % err
        problems = [p for p in map(_py2_problem, scan.globals) if p]
        if problems:
            return "no: %s" % "; ".join(problems)
        return ("torch.load works there, but it is not a plain state dict (%s): convert it "
                "--to melodic for the ROS node" % ", ".join(
                    g for g in scan.globals if not g.startswith(("torch.", "collections."))))


def main(args):
    """Job entry (declared in pose_train.jobs.checkpoint_jobs): args has ckpt, trust."""
    for line in inspect_file(str(args.ckpt), getattr(args, "trust", None) or ()):
        print(line)
    return 0
