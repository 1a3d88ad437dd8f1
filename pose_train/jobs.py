"""What each job is: which image runs it, which function runs it in-process, which
arguments are host paths (and so become bind mounts).

This table is the single place the launcher, ``--dry-run`` and the tests read; the
job code itself lives in the modules named by ``entry``.
"""
import importlib
from dataclasses import dataclass
from typing import Tuple

MODERN, LEGACY = "modern", "legacy"


@dataclass(frozen=True)
class Job:
    name: str                       # compose service name too, where one exists
    image: str                      # MODERN or LEGACY
    entry: str                      # "module:function" taking one argparse-like namespace
    inputs: Tuple[str, ...] = ()    # path args mounted read-only (files or folders)
    outputs: Tuple[str, ...] = ()   # folder args mounted read-write, created on the host first
    out_files: Tuple[str, ...] = ()  # file args whose parent folder is mounted read-write
    uses_gpu: bool = True
    logs_to: str = ""               # the output arg whose folder gets logs/<run-id>.log


JOBS = {j.name: j for j in [
    Job("train-dope", MODERN, "pose_train.dope.train:main",
        inputs=("data", "net", "pretrained", "resume"), outputs=("outf",), logs_to="outf"),
    Job("validate-dope", MODERN, "pose_train.dope.validate:main",
        inputs=("data",), outputs=("outf",), uses_gpu=False, logs_to="outf"),
    Job("synth-dope", MODERN, "pose_train.dope.synth:main",
        outputs=("out",), uses_gpu=False, logs_to="out"),
    Job("synth-linemod", MODERN, "pose_train.keypoints.synth:main",
        outputs=("out",), uses_gpu=False, logs_to="out"),
    Job("prepare-keypoints", MODERN, "pose_train.keypoints.prepare:main",
        inputs=("data", "split"), outputs=("outf",), uses_gpu=False, logs_to="outf"),
    Job("train-keypoints", MODERN, "pose_train.keypoints.train:main",
        inputs=("data", "loadModel", "pretrained", "resume"), outputs=("outf",), logs_to="outf"),
    Job("eval-keypoints", MODERN, "pose_train.keypoints.evaluate:main",
        inputs=("data", "model", "detections"), outputs=("outf",), logs_to="outf"),
    Job("convert", MODERN, "compat.convert:main",
        inputs=("src",), out_files=("out",), uses_gpu=False),
    Job("inspect", MODERN, "compat.inspect_ckpt:main", inputs=("ckpt",), uses_gpu=False),
    Job("verify-melodic", LEGACY, "compat.melodic:main",
        inputs=("ckpt", "reference"), uses_gpu=False),
]}


def resolve_entry(job):
    """Import the job's function only when it runs: the host launcher never imports torch."""
    module_name, func_name = job.entry.split(":")
    return getattr(importlib.import_module(module_name), func_name)
