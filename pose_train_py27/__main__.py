"""``python2.7 -m pose_train_py27 verify|infer dope ...``: the legacy image's entrypoint.

``verify`` keeps its own parser; the other jobs' flags come from pose_train_py27.job_fields,
the table pose-train's own CLI is built from too, so both accept the same command lines.
"""
from __future__ import absolute_import, print_function

import argparse
import sys

from pose_train_py27 import job_fields
from pose_train_py27.errors import InputError

JOBS = {("infer", "dope"): (job_fields.INFER_DOPE, "pose_train_py27.dope_infer")}
_TYPES = {"int": int, "float": float, "str": str, "path": str}


def _parser(words, fields):
    parser = argparse.ArgumentParser(prog="python -m pose_train_py27 " + " ".join(words))
    for f in fields:
        names = ["--" + f["name"], "--" + f["name"].replace("_", "-")]
        names = sorted(set(names), key=names.index)
        if f.get("type") == "bool":
            parser.add_argument(*names, dest=f["name"], action="store_true", help=f["help"])
            continue
        kwargs = dict(dest=f["name"], type=_TYPES[f.get("type", "str")], help=f["help"],
                      default=[] if f.get("many") else f.get("default"))
        if f.get("choices"):
            kwargs["choices"] = f["choices"]
        if f.get("many"):
            kwargs["action"] = "append"
        parser.add_argument(*names, **kwargs)
        if f.get("positional"):
            parser.add_argument("_" + f["name"], nargs="*" if f.get("many") else "?",
                                metavar=f["name"].upper())
    # The launcher turns pose-train's --gpus into a device for this image.
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser


def main(argv):
    words = tuple(argv[:2])
    if words not in JOBS:
        from pose_train_py27.verify import main as verify_main
        return verify_main()
    fields, module = JOBS[words]
    args = _parser(words, fields).parse_args(argv[2:])
    for f in fields:
        given = getattr(args, "_" + f["name"], None) if f.get("positional") else None
        if f.get("many") and given:
            setattr(args, f["name"], given + getattr(args, f["name"]))
        elif given is not None and not f.get("many"):
            setattr(args, f["name"], given)
    return __import__(module, fromlist=["main"]).main(args)


def boundary(argv):
    """The legacy runtime's one error boundary, as pose_train.cli.main is the modern one's."""
    try:
        return main(argv)
    except InputError as err:
        print("pose-train: error: %s" % err, file=sys.stderr)
        return err.code


sys.exit(boundary(sys.argv[1:]))
