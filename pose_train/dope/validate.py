"""`pose-train validate dope`: check a dataset before training.

Writes ``data_report.txt`` (one line per problem: file + reason, then a summary),
``data_report.json`` (per --data folder: dialects, corner order, problems, cuboid, cameras) and PNG grids of
augmented samples exactly as training sees them, with the cuboids and the belief maps drawn. Any
tile without a cuboid has a line in the report saying why.
"""
import os

import numpy as np
import torch
from torch.utils.data import default_collate

from pose_train.dope.augment import NORMALIZATIONS
from pose_train.dope.data import dimensions_of, scan
from pose_train.dope.draw import batch_grid, save_grid
from pose_train.dope.steps import StepConfig, prepare_batch
from pose_train.dope.loader import DopeDataset
from pose_train.errors import UserError
from pose_train.files import atomic_write_json, make_folder

PREVIEW_SIGMA_PX = 4.0


def write_previews(dataset, cfg, outf, prefix, n_grids=2, per_grid=8):
    """``n_grids`` PNGs of ``per_grid`` augmented samples each; returns their paths."""
    order = np.random.default_rng(cfg.seed).permutation(len(dataset))
    paths = []
    for g in range(n_grids):
        picked = order[g * per_grid:(g + 1) * per_grid]
        if len(picked) == 0:
            break
        batch = default_collate([dataset[int(i)] for i in picked])
        images, beliefs, _, points, valid = prepare_batch(batch, cfg, epoch=0, step=g)
        captions = [_caption(dataset.samples[int(i)], points[k], valid[k], dataset.imagesize)
                    for k, i in enumerate(picked)]
        grid = batch_grid(images, points, valid, beliefs, captions=captions,
                          normalization=cfg.normalization)
        paths.append(save_grid(os.path.join(outf, "%s_%02d.png" % (prefix, g + 1)), grid))
    return paths


def _caption(sample, points, valid, size):
    """File name, plus why a tile shows no cuboid (the data report has the file's line)."""
    name = os.path.basename(sample.image)
    if not len(sample.points):
        return name + ": no object (see report)"
    pts = points[valid]
    if not ((pts >= 0) & (pts < size)).all(dim=-1).any():
        return name + ": cropped out"
    return name


def folder_facts(root, args, seen=None):
    """What one --data folder holds, as the trainer reads it: dialects, the corner order found,
    what was put right or refused and why, the cuboid, the cameras. ``seen``: the real paths of
    frames an earlier --data reported, which count there only (as the trainer counts them)."""
    seen = set() if seen is None else seen
    try:
        samples, report = scan([root], args.object, args.imagesize, max_pixels=args.max_pixels)
    except UserError as err:
        return {"folder": root, "error": str(err)}
    mine = [s for s in samples if os.path.realpath(s.image) not in seen]
    repeated, samples = len(samples) - len(mine), mine
    seen.update(os.path.realpath(s.image) for s in samples)
    cameras = sorted({tuple(round(s.intrinsics[k], 3) for k in ("fx", "fy", "cx", "cy"))
                      for s in samples if s.intrinsics and len(s.intrinsics) == 4})
    dims = dimensions_of(samples)
    dialects = {}
    for s in samples:
        dialects[s.dialect] = dialects.get(s.dialect, 0) + 1
    return {"folder": root, "frames": len(samples), "objects": int(sum(len(s.points) for s in samples)),
            "dialects": dialects, "corner_orders": dict(report.orders), "problems": dict(report.counts),
            "dimensions_cm": None if dims is None else [round(100 * v, 3) for v in dims],
            "cameras": [dict(zip(("fx", "fy", "cx", "cy"), c)) for c in cameras],
            "frames_under_an_earlier_data": repeated}


def describe(facts):
    """One --data folder's facts as lines for people."""
    if "error" in facts:
        return "%s: %s" % (facts["folder"], facts["error"])
    cams = facts["cameras"]
    camera = ("fx %(fx)g fy %(fy)g cx %(cx)g cy %(cy)g" % cams[0] if len(cams) == 1 else
              "%d different cameras" % len(cams) if cams else "none given")
    return ("%s: %d frames, %d objects; %s; corner order %s; cuboid %s cm; camera %s%s" % (
        facts["folder"], facts["frames"], facts["objects"],
        ", ".join("%s %d" % kv for kv in sorted(facts["dialects"].items())),
        ", ".join("%s %d" % kv for kv in sorted(facts["corner_orders"].items())) or "not checked",
        " x ".join("%g" % v for v in facts["dimensions_cm"]) if facts["dimensions_cm"] else "unknown",
        camera, "; " + ", ".join("%d %s" % (n, kind) for kind, n in sorted(facts["problems"].items()))
        if facts["problems"] else "")) + (
        "; %d more frames counted under an earlier --data" % facts["frames_under_an_earlier_data"]
        if facts.get("frames_under_an_earlier_data") else "")


def main(args):
    """Job entry: args.data, args.object, args.outf, args.imagesize, args.strict, args.seed."""
    if not args.data:
        raise UserError("validate dope needs --data DIR (repeatable): the dataset to check")
    made = not os.path.isdir(args.outf)
    make_folder(args.outf)
    try:
        samples, report = scan(list(args.data), args.object, args.imagesize, strict=args.strict,
                               max_pixels=args.max_pixels,
                               report_to=os.path.join(args.outf, "data_report.txt"))
    except UserError:
        if made and not os.listdir(args.outf):   # refused before a report: leave nothing behind
            os.rmdir(args.outf)
        raise
    report_path = report.write(os.path.join(args.outf, "data_report.txt"), len(samples))
    for line in report.lines[:20]:
        print(line)
    if len(report.lines) > 20:
        print("... %d more lines in %s" % (len(report.lines) - 20, report_path))
    print(report.summary(len(samples)))
    seen = set()
    folders = [folder_facts(root, args, seen) for root in args.data]
    for facts in folders:
        print(describe(facts))
    atomic_write_json(os.path.join(args.outf, "data_report.json"), {
        "frames_used": len(samples), "summary": report.summary(len(samples)), "folders": folders})
    dataset = DopeDataset(samples, args.imagesize, seed=args.seed, train=True)
    cfg = StepConfig(device=torch.device("cpu"), sigma=PREVIEW_SIGMA_PX / 8.0, seed=args.seed,
                     normalization=NORMALIZATIONS[args.normalize])
    for path in write_previews(dataset, cfg, args.outf, prefix="validate"):
        print("wrote %s" % path)
    print("report: %s" % report_path)
    return 0
