"""One training epoch and one evaluation pass for DOPE.

A step: uint8 crops + keypoints arrive from the loader; photometric augmentation, normalisation
and targets are computed on the device for the whole batch; forward under autocast (bf16 on
CUDA by default); loss in fp32 = sum over the six stages of MSE(belief) + MSE(affinity).
"""
import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pose_train.dope.augment import (NORMALIZATIONS, PhotometricParams, normalize, photometric, step_generator,
                                     warp_batch)
from pose_train.dope.targets import STRIDE, belief_peaks, make_targets
from pose_train.errors import UserError
from pose_train.training.loop import EpochResult
from pose_train.training.progress import Progress
from pose_train.training.distributed import mean_over_ranks, no_sync, sum_ranks, virtual_rank


@dataclass
class StepConfig:
    device: torch.device
    sigma: float                   # output-map pixels
    radius: float = 1.0
    amp_dtype: torch.dtype = None  # None: fp32
    channels_last: bool = False
    seed: int = 0
    rank: int = 0
    accumulate: int = 1            # batches per optimizer step (gradient accumulation)
    photometric: PhotometricParams = None
    crop_size: int = 0             # needed when batches carry whole frames (device warp)
    normalization: dict = field(default_factory=lambda: dict(NORMALIZATIONS["ros"]))
    foreground_weight: float = 1.0  # training loss weight of a map's peaks (1: plain MSE)


def prepare_batch(batch, cfg, epoch, step, train=True, micro=0, sigma=None):
    """Loader batch -> (normalised images, belief targets, affinity targets, keypoints, valid).
    micro: which of a step's accumulated batches (its augmentation is that virtual rank's).
    sigma: the step's belief sigma in map cells (a recipe's schedule), else cfg.sigma."""
    dev = cfg.device
    if len(batch) == 5:      # whole frames + affines (DopeDataset device_warp): crop here
        frames, matrices, points, valid, _ = batch
        images = warp_batch(frames.to(dev, non_blocking=True), matrices, cfg.crop_size)
    else:
        images, points, valid, _ = batch
        images = images.to(dev, non_blocking=True).float().div_(255.0)   # (B, H, W, 3)
    points = points.to(dev, non_blocking=True)
    valid = valid.to(dev, non_blocking=True)
    if train:
        gen = step_generator(dev, cfg.seed, epoch, step, virtual_rank(cfg.rank, cfg.accumulate, micro))
        images = photometric(images, gen, cfg.photometric or PhotometricParams())
    # NCHW view of channels-last memory: exactly torch.channels_last, so no copy on CUDA.
    images = normalize(images, cfg.normalization).permute(0, 3, 1, 2)
    if not cfg.channels_last:
        images = images.contiguous()
    size = images.shape[-2:]
    beliefs, affinities = make_targets(points, valid, (size[0] // STRIDE, size[1] // STRIDE),
                                       cfg.sigma if sigma is None else sigma, cfg.radius)
    return images, beliefs, affinities, points, valid


def dope_loss(out_beliefs, out_affinities, beliefs, affinities, foreground_weight=1.0):
    """Sum over stages of MSE; outputs may be bf16 under autocast, the loss is fp32.
    foreground_weight w > 1 weighs each squared error by 1 + (w - 1) x the target's magnitude
    (belief Gaussians, affinity disks): the few cells that matter against a map of zeros."""
    if foreground_weight == 1.0:
        wb = wa = None
    else:
        wb = 1.0 + (foreground_weight - 1.0) * beliefs
        wa = 1.0 + (foreground_weight - 1.0) * (affinities != 0).float()
    loss = 0.0
    for b, a in zip(out_beliefs, out_affinities):
        if wb is None:
            loss = loss + F.mse_loss(b.float(), beliefs) + F.mse_loss(a.float(), affinities)
        else:
            loss = (loss + (wb * (b.float() - beliefs) ** 2).mean()
                    + (wa * (a.float() - affinities) ** 2).mean())
    return loss


def forward_loss(model, images, beliefs, affinities, cfg):
    """(the recipe's loss, with its foreground weight; the final stage's beliefs)."""
    with torch.autocast(cfg.device.type, dtype=cfg.amp_dtype or torch.float32,
                        enabled=cfg.amp_dtype is not None):
        out_b, out_a = model(images)
    return dope_loss(out_b, out_a, beliefs, affinities, cfg.foreground_weight), out_b[-1]


def train_one_epoch(model, optimizer, scaler, loader, cfg, epoch, start_step, should_stop,
                    log, info, show_progress=True, steps_after=0, every=None, carried=(0.0, 0),
                    schedule=None):
    """Train until the loader ends or ``should_stop()`` (checked on every rank, every step).
    The loader yields ``cfg.accumulate`` batches per optimizer step (loader.EpochBatches).
    carried: (loss sum, steps) of this epoch before a resume, for the epoch's mean.
    steps_after: steps of the later epochs, for the progress line's run ETA. every: (N, f)
    calls f(step) after every N-th step of the epoch (validation between steps). schedule: the
    recipe's (recipes.Schedule): each step's learning rate and belief sigma."""
    model.train()
    stop = False
    step, (total, count), seen, wait = start_step, carried, 0, 0.0
    t0 = time.perf_counter()
    progress = Progress("epoch %d" % epoch, start_step + len(loader) // cfg.accumulate,
                        initial=start_step, steps_after=steps_after, enabled=show_progress)
    ready, value, sigma = time.perf_counter(), 0.0, None
    try:
        for i, batch in enumerate(loader):
            # Time blocked on the loader (the step before ended with a device sync in .item()):
            # the "is the GPU starved?" number.
            wait += time.perf_counter() - ready
            micro = i % cfg.accumulate
            last = micro == cfg.accumulate - 1
            if micro == 0:
                optimizer.zero_grad(set_to_none=True)
                value = 0.0
                if schedule is not None:
                    sigma = schedule.before_step(optimizer, epoch, step)
            images, tb, ta, points, valid = prepare_batch(batch, cfg, epoch, step, micro=micro,
                                                          sigma=sigma)
            # Gradients are averaged over ranks once a step, not after every accumulated batch.
            with contextlib.nullcontext() if last else no_sync(model), \
                    _running_stats_of_first(model, micro):
                loss, final = forward_loss(model, images, tb, ta, cfg)
                _backward(loss / cfg.accumulate, scaler)
            value += loss.item() / cfg.accumulate
            seen += images.shape[0]
            ready = time.perf_counter()
            if not last:
                continue
            _optimizer_step(optimizer, scaler)
            value = mean_over_ranks(value, info)
            if not math.isfinite(value):
                raise UserError("training loss became %s at epoch %d step %d; lower --lr or check "
                                "the data report; any net_epoch_*.pth already in --outf is intact"
                                % (value, epoch, step))
            step += 1
            total, count = total + value, count + 1
            log.write(kind="step", epoch=epoch, step=step, loss=value)
            if log.wants_images():
                _log_images(log, images, points, valid, tb, final, cfg)
            progress.update(value, images.shape[0] * info.world_size * cfg.accumulate)
            if every and step % every[0] == 0:
                every[1](step)
            stop = should_stop()     # the same answer on every rank
            ready = time.perf_counter()
            if stop:
                break
    finally:
        progress.close()
    return EpochResult("stopped" if stop else "done", step if stop else 0,
                       total / max(1, count), total, count, int(sum_ranks(seen, info)),
                       time.perf_counter() - t0, wait)


@contextlib.contextmanager
def _running_stats_of_first(model, micro):
    """BatchNorm's running statistics (the fast recipe's, folded into the saved weights) follow
    a step's first accumulated batch only: under DDP they are rank 0's (its buffers are
    broadcast every forward), and K accumulated batches stand for K ranks."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if micro == 0 or not norms:
        yield
        return
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def _backward(loss, scaler):
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
    else:
        loss.backward()


def _optimizer_step(optimizer, scaler):
    if scaler is not None and scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


@torch.no_grad()
def _log_images(log, images, points, valid, targets, final, cfg, n=4):
    """TensorBoard: the first crops with their cuboids, beside the target belief maps and the
    final stage's prediction (max over the 9 maps)."""
    from pose_train.dope.draw import batch_grid
    norm = cfg.normalization
    images = images.detach().float().cpu()[:n]    # NCHW, as batch_grid takes them
    pts, ok = points[:n].cpu(), valid[:n].cpu()
    log.image("train/targets", batch_grid(images.clone(), pts, ok, targets[:n], normalization=norm))
    log.image("train/predicted", batch_grid(images.clone(), pts, ok, final[:n], normalization=norm))


@torch.no_grad()
def evaluate(model, loader, cfg, max_px=2.0):
    """Mean loss, the loss of all-zero maps on the same targets (what a network that has
    learnt nothing reaches), the fraction of visible keypoints whose final-stage peak is
    within ``max_px`` output pixels of the truth, and the mean height of the final stage's
    belief peaks (how far from empty its maps are)."""
    model.eval()
    total, empty, batches, hits, visible, heights = 0.0, 0.0, 0, 0, 0, []
    for batch in loader:
        images, tb, ta, points, valid = prepare_batch(batch, cfg, 0, 0, train=False)
        loss, final = forward_loss(model, images, tb, ta, cfg)
        stages = getattr(model, "module", model).stages
        empty += dope_loss([torch.zeros_like(tb)] * stages, [torch.zeros_like(ta)] * stages,
                           tb, ta, cfg.foreground_weight).item()
        total, batches = total + loss.item(), batches + 1
        peaks, values = belief_peaks(final.float())                  # (B, 9, 2) crop px
        heights.append(values.mean().item())
        size = images.shape[-1]
        for b in range(points.shape[0]):
            for o in range(int(valid[b].sum())):
                pts = points[b, o]
                inside = ((pts >= 0) & (pts < size)).all(dim=-1)
                dist = (peaks[b] - pts).norm(dim=-1) / STRIDE
                hits += int(((dist <= max_px) & inside).sum())
                visible += int(inside.sum())
    model.train()
    return {"loss": total / max(1, batches), "empty_map_loss": empty / max(1, batches),
            "peak_within_2px": hits / max(1, visible),
            "visible_keypoints": visible, "peak_value": sum(heights) / max(1, len(heights))}
