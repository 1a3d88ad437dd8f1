"""`pose-train validate dope`: check a dataset before training.

Writes ``data_report.txt`` (one line per problem: file + reason, then a summary) and PNG grids of
augmented samples exactly as training sees them, with the cuboids and the belief maps drawn. Any
tile without a cuboid has a line in the report saying why.
"""
import os

import numpy as np
import torch
from torch.utils.data import default_collate

from pose_train.dope.augment import NORMALIZATIONS
from pose_train.dope.data import scan
from pose_train.dope.draw import batch_grid, save_grid
from pose_train.dope.steps import StepConfig, prepare_batch
from pose_train.dope.loader import DopeDataset
from pose_train.errors import UserError
from pose_train.files import make_folder

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


def main(args):
    """Job entry: args.data, args.object, args.outf, args.imagesize, args.strict, args.seed."""
    if not args.data:
        raise UserError("validate dope needs --data DIR (repeatable): the dataset to check")
    make_folder(args.outf)
    samples, report = scan(list(args.data), args.object, args.imagesize, strict=args.strict,
                           max_pixels=args.max_pixels,
                           report_to=os.path.join(args.outf, "data_report.txt"))
    report_path = report.write(os.path.join(args.outf, "data_report.txt"), len(samples))
    for line in report.lines[:20]:
        print(line)
    if len(report.lines) > 20:
        print("... %d more lines in %s" % (len(report.lines) - 20, report_path))
    print(report.summary(len(samples)))
    dataset = DopeDataset(samples, args.imagesize, seed=args.seed, train=True)
    cfg = StepConfig(device=torch.device("cpu"), sigma=PREVIEW_SIGMA_PX / 8.0, seed=args.seed,
                     normalization=NORMALIZATIONS[args.normalize])
    for path in write_previews(dataset, cfg, args.outf, prefix="validate"):
        print("wrote %s" % path)
    print("report: %s" % report_path)
    return 0
