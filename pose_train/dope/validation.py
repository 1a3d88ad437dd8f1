"""Validation while `train dope` trains: a held-out split, the figures that say whether the
network finds the object, the best weights, and the warning users need most.

DOPE's own trainer has none, and its users' most common report is "trained for hours, detects
nothing". The pose figures come from the same decode and PnP `infer dope` runs, with the
weights' own decode settings, so `val_add_01d` here is what `eval dope` reports later.
"""
import os
import sys
import time

import numpy as np
import torch

from pose_train.dope import evaluate as scoring
from pose_train.dope.steps import evaluate as map_figures
from pose_train.dope.weights_files import BEST_NAME, matching_sidecar
from pose_train.dope.loader import DopeDataset, make_loader
from pose_train.errors import UserError
from pose_train.files import atomic_write
from pose_train.training.checkpoint_io import unwrap
from pose_train_py27 import dope_infer, sidecar
from pose_train_py27.cuboid import cuboid_vertices
from pose_train_py27.dope_io import InputError, make_camera
from pose_train_py27.image_files import decode_checked

SPLIT_FILE = "val_frames.txt"
FRACTION, LEAST, MOST = 0.05, 8, 200
EMPTY_MARGIN, EMPTY_EPOCHS = 0.02, 3
# A map whose peak is below the node's thresh_points (0.1) yields no keypoint: maps that
# low are empty to the decode, whatever their loss.
EMPTY_PEAK = 0.1
EMPTY_WARNING = (
    "WARNING: the network is predicting empty maps: for {epochs} epochs val_loss has not fallen "
    "{margin:.0%} below the loss all-zero maps get ({loss:.5f} vs {empty:.5f}) and its belief "
    "peaks stay below the node's thresh_points 0.1. Usual causes: "
    "the data (check {outf}/data_report.txt and `pose-train validate dope`), DOPE's own recipe "
    "(--recipe dope; --recipe fast learns from a random trunk in minutes), a random trunk "
    "(`pose-train fetch-weights`, then --pretrained imagenet), the learning rate (--lr), or an "
    "object that spans too few map cells at --imagesize (crop it larger or move the camera "
    "closer: it should span >= 8 cells of 8 px).")


def held_out_count(n):
    """5% of the frames, at least 8 and at most 200, always leaving half to train on."""
    return int(min(MOST, max(LEAST, round(FRACTION * n)), n // 2))


def _key(sample):
    # The real file: the same frame reached through a symlink or "dir/" is one frame.
    return os.path.realpath(sample.image)


def split(samples, args, say, is_main, val_samples=None):
    """(training frames, validation frames). ``val_samples`` (from --val) keep every --data
    frame not among them for training; otherwise a seeded slice of --data is held out. The
    list is written to OUTF/val_frames.txt and read back whenever it is there, so a resumed
    run keeps its split; a --val that disagrees with it is refused, never silently mixed."""
    path = os.path.join(args.outf, SPLIT_FILE)
    if os.path.isfile(path):
        return _saved_split(path, samples, val_samples)
    if val_samples is not None:
        chosen = val_samples
        held = set(_key(s) for s in chosen)
        train = [s for s in samples if _key(s) not in held]
        if len(train) < len(samples):
            say("note: %d --val frame(s) are also in --data; they are held out, not trained on"
                % (len(samples) - len(train)))
    else:
        count = held_out_count(len(samples))
        picked = set(np.random.default_rng(args.seed).permutation(len(samples))[:count].tolist())
        chosen = [s for i, s in enumerate(samples) if i in picked]
        train = [s for i, s in enumerate(samples) if i not in picked]
    if is_main and chosen and train:   # nothing to train: the run is refused, and leaves no split
        text = "".join(_key(s) + "\n" for s in chosen)
        atomic_write(path, lambda f: f.write(text), binary=False)
    return train, chosen


def _saved_split(path, samples, val_samples):
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    wanted = set(names)
    if val_samples is not None and set(_key(s) for s in val_samples) != wanted:
        raise UserError("%s holds the held-out frames this run started with, and --val names "
                        "others; resume with the --val it started with (its continue line has "
                        "it), or start a new --outf" % path)
    found = {}
    for s in list(val_samples or []) + list(samples):
        if _key(s) in wanted:
            found.setdefault(_key(s), s)
    if len(found) < len(wanted):
        missing = next(n for n in names if n not in found)
        fix = ("pass the --val the run started with, or start a new --outf"
               if val_samples is not None else "pass the --val the run started with, if it had one; if the data moved, the "
               "split names its frames by path: put them back, or start a new --outf with --net "
               "and one of this run's net_epoch_*.pth")
        raise UserError("%s lists %d held-out frame(s) that are in neither --data nor --val now "
                        "(e.g. %s); %s" % (path, len(wanted) - len(found), missing, fix))
    return [s for s in samples if _key(s) not in wanted], [found[n] for n in names]


class Validator:
    """One validation pass = the map figures on fixed centre crops + poses on whole frames."""

    def __init__(self, samples, cfg, meta, batchsize):
        self.samples = [s for s in samples if len(s.points)]
        self.cfg, self.meta = cfg, meta
        self.dataset = DopeDataset(self.samples, meta["imagesize"], seed=0, train=False)
        self.batchsize = batchsize
        self.settings = sidecar.decode_of(meta)
        dims = meta.get("dimensions_cm")
        self.dims = list(dims) if dims else None
        if self.dims:
            self.points = cuboid_vertices([d / 100.0 for d in self.dims])[:8]
            self.diameter = float(np.linalg.norm(self.dims) / 100.0)

    def __len__(self):
        return len(self.samples)

    def run(self, model):
        """The figures (plain floats), measured without touching the training RNG."""
        start = time.perf_counter()
        net = unwrap(model)
        devices = [self.cfg.device] if self.cfg.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            loader = make_loader(self.dataset, None, self.batchsize, 0, drop_last=False)
            maps = map_figures(net, loader, self.cfg)
            poses = self._poses(net) if self.dims else {}
        out = {"val_frames": len(self.samples), "val_loss": maps["loss"],
               "val_empty_map_loss": maps["empty_map_loss"],
               "val_peaks_within_2px": maps["peak_within_2px"],
               "val_peak_value": round(maps["peak_value"], 5)}
        out.update(poses)
        out["val_seconds"] = round(time.perf_counter() - start, 3)
        return out

    @torch.no_grad()
    def _poses(self, net):
        was_training = net.training
        net.eval()
        rows, false_positives = [], 0
        try:
            for s in self.samples:
                if not s.intrinsics:
                    continue
                try:
                    bgr = decode_checked(s.image)
                except InputError as err:   # damaged since the scan: left out, and said
                    print("pose-train: warning: validation: %s; left out of the figures" % err,
                          file=sys.stderr, flush=True)
                    continue
                cam = make_camera(source=s.image, **s.intrinsics)
                dets = dope_infer.infer_frame(net, self.cfg.device, bgr[:, :, ::-1].copy(), cam,
                                              self.dims, self.settings,
                                              self.cfg.normalization)[0]
                frame_rows, extra = scoring.score_frame(s, dets, self.points, False)
                rows += frame_rows
                false_positives += extra
        finally:
            net.train(was_training)
        summary = scoring.summarize(rows, self.diameter, false_positives)
        return {"val_detection_rate": summary["detection_rate"],
                "val_add_01d": summary["add_below_0.1d"],
                "val_add_auc": summary["add_auc_0_10cm"],
                "val_median_px": summary["median_reproj_px"],
                "val_false_positives": summary["false_positives"]}


def is_better(figures, best):
    """Higher val_add_01d wins; a tie goes to the lower val_loss."""
    if best is None:
        return True
    mine, theirs = figures.get("val_add_01d") or 0.0, best.get("val_add_01d") or 0.0
    if mine != theirs:
        return mine > theirs
    return figures["val_loss"] < best["val_loss"]


def best_so_far(outf, say=print):
    """The figures net_best.json recorded (a resumed run keeps beating the same bar). A pair
    a kill cut between its two renames is removed: the run's state predates that save, so the
    epoch that made it trains and validates again and writes the pair whole."""
    path = os.path.join(outf, BEST_NAME)
    if not os.path.isfile(path):
        return None
    meta = sidecar.read(path)
    if not matching_sidecar(path, meta):
        for name in (path, sidecar.path_of(path)):
            os.remove(name)
        say("repaired: %s and its json described different epochs (a save cut short by a "
            "kill); removed both, and the epoch whose save was cut trains again and writes them"
            % path)
        return None
    return meta.get("val")


def empty_map_warning(history, outf):
    """The warning text when the last EMPTY_EPOCHS epochs all sat at the empty-map loss."""
    recent = [h for h in history if h.get("val_loss") is not None][-EMPTY_EPOCHS:]
    if len(recent) < EMPTY_EPOCHS:
        return None
    # Both: a network that learns early draws peaks in the wrong places, which can cost more
    # than empty maps (the fast recipe's weighted loss) though its maps are anything but empty.
    if all(h["val_loss"] >= (1.0 - EMPTY_MARGIN) * h["val_empty_map_loss"]
           and h.get("val_peak_value", 0.0) < EMPTY_PEAK for h in recent):
        last = recent[-1]
        return EMPTY_WARNING.format(margin=EMPTY_MARGIN, loss=last["val_loss"],
                                    empty=last["val_empty_map_loss"], epochs=EMPTY_EPOCHS,
                                    outf=outf)
    return None


class Watch:
    """What the trainer asks after an epoch (or every --val_every steps): the figures, the
    best weights when they improve, and the empty-map warning. Main rank only."""

    def __init__(self, validator, outf, say, time_limit, history=()):
        self.validator, self.outf, self.say, self.time_limit = validator, outf, say, time_limit
        self.history = [h for h in history if h.get("val_loss") is not None]
        self.best = best_so_far(outf, say)
        self.last_seconds = 0.0

    def figures(self, model, where):
        """The validation figures, or {} when there is no validation or no time for it."""
        if not self.validator:
            return {}
        if self.last_seconds > self.time_limit.remaining():
            self.say("validation at %s skipped: the last pass took %.0f s and --time_limit "
                     "leaves less" % (where, self.last_seconds))
            return {}
        figures = self.validator.run(model)
        self.last_seconds = figures["val_seconds"]
        self.say("validation at %s (%d frames, %.1f s): %s" % (where, figures["val_frames"],
                                                              figures["val_seconds"],
                                                              describe(figures)))
        return figures

    def epoch_end(self, model, epoch, epoch_seconds, save_best):
        """Figures for the epoch record; ``save_best(figures)`` writes net_best.* if better."""
        figures = self.figures(model, "epoch %d" % epoch)
        if not figures:
            return {}
        figures["val_fraction_of_epoch"] = round(figures["val_seconds"] / max(epoch_seconds, 1e-9), 4)
        self.history.append(figures)
        warning = empty_map_warning(self.history, self.outf)
        if warning:
            self.say(warning, flush=True)
        if is_better(figures, self.best):
            path = save_best(dict(figures, epoch=epoch))
            self.best = figures
            self.say("new best (val_add_01d %.1f%%, val_loss %.5f): %s"
                     % (100 * (figures.get("val_add_01d") or 0.0), figures["val_loss"], path))
        return figures


def describe(f):
    text = "loss %.5f (empty maps %.5f), peaks within 2 cells %.1f%%" % (
        f["val_loss"], f["val_empty_map_loss"], 100 * f["val_peaks_within_2px"])
    if "val_detection_rate" in f:
        text += ", detected %.1f%%, ADD < 0.1 d %.1f%%, ADD AUC %.3f, median 2D error %s" % (
            100 * f["val_detection_rate"], 100 * f["val_add_01d"], f["val_add_auc"],
            "-" if f["val_median_px"] is None else "%.1f px" % f["val_median_px"])
        if f.get("val_false_positives"):
            text += ", %d false positive(s)" % f["val_false_positives"]
    return text


def scan_val(roots, object_name, imagesize, strict, scan):
    for root in roots:
        if not os.path.isdir(root):
            raise UserError("--val %s: no such folder; pass a folder of annotated DOPE frames "
                            "(PNG/JPEG + JSON)" % root)
    try:
        samples, report = scan(list(roots), object_name, imagesize, strict=strict)
    except InputError as err:
        raise UserError("--val: %s" % err)
    if not samples:
        raise UserError("--val %s: no annotated frames of %r; pass a folder of DOPE frames "
                        "that show the object" % (", ".join(roots), object_name))
    return samples, report
