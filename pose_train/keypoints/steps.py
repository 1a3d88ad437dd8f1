"""One training epoch and one validation pass of the keypoint localizer."""
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from pose_train.errors import UserError
from pose_train.keypoints import heatmaps, transforms
from pose_train.training import checkpoint_io as ckpt
from pose_train.training import distributed as ddp
from pose_train.training.loop import EpochResult
from pose_train.training.progress import Progress

LOG_EVERY = 20   # keypoint steps between step records (each costs a device sync)


def autocast(device, amp):
    """bf16 autocast on CUDA (no loss scaling needed); full fp32 elsewhere or with --amp off."""
    if device.type == "cuda" and amp != "off":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_generator(device, seed, epoch, step, rank=0):
    """A generator per step, seeded from (seed, epoch, step, rank): resuming mid-epoch is
    exact without saving generator state, and every batch's augmentation is reproducible."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1000003 + epoch * 10007 + step + rank * 7919 * 10007) % (2 ** 63))
    return gen


def epoch_order(n, seed, epoch):
    gen = torch.Generator()
    gen.manual_seed(seed * 7919 + epoch)
    return torch.randperm(n, generator=gen)


def steps_per_epoch(n, batch):
    return max(1, n // batch)  # drop the last partial batch, as AlphaPose's loader does


@dataclass
class StepConfig:
    """What a step and a validation pass need besides the model, its optimizer and the data."""
    device: torch.device
    batch: int                     # frames of one optimizer step over all processes
    seed: int
    input_hw: tuple
    sigma: float                   # heatmap Gaussian, in heatmap cells
    amp: str = "off"               # "off" | "bf16" (CUDA only)
    channels_last: bool = False
    train_occluded: bool = False
    augment: transforms.Augment = field(default_factory=transforms.Augment)
    accumulate: int = 1            # batches per optimizer step on each process


def train_epoch(model, optimizer, data, cfg, epoch, start_step, should_stop, log=None,
                info=None, use_dpg=False, epochs=None, carried=(0.0, 0)):
    """Train one epoch from start_step until it ends or ``should_stop()`` (asked after every
    step, training.loop.EpochLoop.should_stop); returns a training.loop.EpochResult.
    carried: (loss sum, steps) of this epoch before a resume, for the epoch's mean.
    epochs: the run's last epoch (from 1), for the progress line and its run ETA."""
    info = info or ddp.DistInfo()
    n = data["crops"].shape[0]
    # One optimizer step takes `batch` frames over all ranks and accumulated batches:
    # per_batch from each, as a world of world_size x accumulate processes would.
    share = info.world_size * cfg.accumulate
    per_batch = max(1, min(cfg.batch, n) // share)
    batch = per_batch * share
    # Seeded by the epoch's index from 0, as before epochs counted from 1 here: a state saved
    # by an earlier version resumes on the same batches.
    order = epoch_order(n, cfg.seed, epoch - 1)
    # The loss stays on the device until the epoch ends: a .item() per step would make the
    # host wait for the GPU every step and starve the queue.
    carried, count = carried if start_step else (0.0, 0)
    total, seen, t0 = torch.full((), carried, device=cfg.device), 0, time.time()
    model.train()
    steps = steps_per_epoch(n, batch)
    progress = Progress("epoch %d/%d" % (epoch, epochs or epoch), steps, initial=start_step,
                        enabled=info.is_main, steps_after=((epochs or epoch) - epoch) * steps)
    step, stop = start_step, False
    try:
        for step in range(start_step, steps):
            loss, shown = _one_step(model, optimizer, data, cfg, (order, epoch, step, batch, per_batch),
                                    use_dpg, info.rank)
            loss = ddp.mean_over_ranks(loss, info)
            total, count, seen = total + loss, count + 1, seen + per_batch * cfg.accumulate
            progress.update(loss, per_batch * share)
            if step % LOG_EVERY == 0:
                _check_finite(total, epoch, step)
            if log is not None and step % LOG_EVERY == 0:
                # One host-device sync per LOG_EVERY steps, not per step; TensorBoard only, so
                # metrics.jsonl keeps one record per epoch.
                log.scalars(kind="step", at=(epoch - 1) * steps + step + 1, epoch=epoch, step=step + 1,
                            loss=float(loss))
                if log.wants_images():
                    _log_images(log, *shown)
            stop = should_stop()
            if stop:
                break
    finally:
        progress.close()
    _check_finite(total, epoch, step)
    total = float(total)                          # synchronises once, before the clock stops
    seconds = max(time.time() - t0, 1e-9)
    return EpochResult("stopped" if stop else "done", step + 1 if stop else 0, total / max(count, 1),
                       total, count, seen * info.world_size, seconds, 0.0)


def _one_step(model, optimizer, data, cfg, where, use_dpg, rank):
    """One optimizer step over ``cfg.accumulate`` batches; (the step's mean loss on the device,
    (inputs, target, output) of its last batch for TensorBoard). where: (the epoch's frame
    order, epoch, step, frames a step, frames a batch)."""
    order, epoch, step, batch, per_batch = where
    optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=cfg.device)
    for micro in range(cfg.accumulate):
        virtual = ddp.virtual_rank(rank, cfg.accumulate, micro)
        lo = step * batch + virtual * per_batch
        idx = order[lo:lo + per_batch].to(cfg.device)
        gen = batch_generator(cfg.device, cfg.seed, epoch - 1, step, virtual)
        inputs, target, weight, _ = transforms.make_batch(
            data, idx, cfg.input_hw, cfg.sigma, gen=gen, aug=cfg.augment,
            use_dpg=use_dpg, train_occluded=cfg.train_occluded)
        if cfg.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        # Gradients are averaged over ranks once a step, not after every accumulated batch.
        last = micro == cfg.accumulate - 1
        with contextlib.nullcontext() if last else ddp.no_sync(model):
            with autocast(cfg.device, cfg.amp):
                out = model(inputs)
            loss = heatmaps.masked_mse(out, target, weight)
            (loss / cfg.accumulate).backward()
        loss_sum = loss_sum + loss.detach().float()
    optimizer.step()
    return loss_sum / cfg.accumulate, (inputs, target, out)


def _check_finite(total, epoch, step):
    """Stop before a NaN model is saved (one device sync, every LOG_EVERY steps)."""
    if not bool(torch.isfinite(total)):
        raise UserError("training loss became %s by epoch %d step %d; nothing of this epoch is saved, and "
                        "the weights and state in --outf are from the last completed epoch. Likely cause: "
                        "extreme labels in the prepared data or a too-high --lr (lower it)"
                        % (float(total), epoch, step + 1))


@torch.no_grad()
def _log_images(log, inputs, target, out, n=4):
    """TensorBoard: input crops beside the target and predicted heatmaps (max over keypoints)."""
    crops = inputs[:n].detach().float().cpu()
    crops = (crops - crops.amin()) / (crops.amax() - crops.amin()).clamp_min(1e-6)
    h, w = crops.shape[2:]
    rows = []
    for b in range(crops.shape[0]):
        row = [crops[b].permute(1, 2, 0).numpy()]
        for maps in (target, out):
            heat = torch.nn.functional.interpolate(maps[b:b + 1].detach().float().amax(1, True),
                                                   size=(h, w), mode="nearest")[0, 0].cpu()
            row.append(heat.clamp(0, 1)[..., None].expand(h, w, 3).numpy())
        rows.append(np.concatenate(row, axis=1))
    log.image("train/input_target_predicted", (np.concatenate(rows, axis=0) * 255).astype(np.uint8))


@torch.no_grad()
def validate(model, data, cfg, alpha=0.05):
    """(PCK, loss, empty-heatmap loss) on the validation frames with ground-truth boxes. PCK is
    AlphaPose's accuracy measure: keypoints within alpha * heatmap height (4 cells at 80x64);
    the empty-heatmap loss is what all-zero maps score, i.e. a network that learnt nothing."""
    # The bare module: only rank 0 validates, and a DDP forward would wait for the others.
    model = ckpt.unwrap(model)
    model.eval()
    n = data["crops"].shape[0]
    hits, total, loss_sum, empty_sum = 0.0, 0.0, 0.0, 0.0
    for s in range(0, n, cfg.batch):
        idx = torch.arange(s, min(s + cfg.batch, n), device=cfg.device)
        inputs, target, weight, _ = transforms.make_batch(data, idx, cfg.input_hw, cfg.sigma,
                                                          train_occluded=cfg.train_occluded)
        if cfg.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(cfg.device, cfg.amp):
            out = model(inputs)
        loss_sum += float(heatmaps.masked_mse(out, target, weight)) * len(idx)
        empty_sum += float(heatmaps.masked_mse(torch.zeros_like(target), target, weight)) * len(idx)
        pred, _ = heatmaps.decode(out.float())
        true, _ = heatmaps.decode(target)
        ref = torch.full((len(idx),), float(target.shape[2]), device=cfg.device)
        w = weight * (target.amax(dim=(2, 3)) > 0.5).float()   # the target peak is on the map
        hits += heatmaps.pck(pred, true, w, ref, alpha) * float(w.sum())
        total += float(w.sum())
    model.train()
    return hits / max(total, 1.0), loss_sum / max(n, 1), empty_sum / max(n, 1)
