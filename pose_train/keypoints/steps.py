"""One training epoch and one validation pass of the keypoint localizer."""
import contextlib
import time

import numpy as np
import torch

from pose_train.errors import UserError
from pose_train.keypoints import heatmaps, transforms
from pose_train.training import checkpoint_io as ckpt
from pose_train.training import distributed as ddp
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


def train_epoch(run, epoch, start_step, should_stop, log=None):
    """Train one epoch from start_step; returns (mean loss, next step or None when complete).

    run carries model, optimizer, data, device and the settings (see train.Run);
    ``should_stop()`` is asked after every step (training.loop.EpochLoop.should_stop).
    A resumed epoch's mean includes the steps before the stop (``run.epoch_loss``), which
    holds this epoch's (loss sum, steps) when it stops.
    """
    model, data = run.model, run.train_data
    n = data["crops"].shape[0]
    # One optimizer step takes `batch` frames over all ranks and accumulated batches:
    # per_batch from each, as a world of world_size x accumulate processes would.
    share = run.info.world_size * run.accumulate
    per_batch = max(1, min(run.batch, n) // share)
    batch = per_batch * share
    # Seeded by the epoch's index from 0, as before epochs counted from 1 here: a state saved
    # by an earlier version resumes on the same batches.
    order = epoch_order(n, run.seed, epoch - 1)
    # The loss stays on the device until the epoch ends: a .item() per step would make the
    # host wait for the GPU every step and starve the queue.
    carried, count = run.epoch_loss if start_step else (0.0, 0)
    total, seen, t0 = torch.full((), carried, device=run.device), 0, time.time()
    model.train()
    steps = steps_per_epoch(n, batch)
    progress = Progress("epoch %d/%d" % (epoch, run.last_epoch), steps, initial=start_step,
                        enabled=run.info.is_main,
                        steps_after=(run.last_epoch - epoch) * steps)
    try:
        for step in range(start_step, steps):
            loss, shown = _one_step(run, order, epoch, step, batch, per_batch)
            loss = ddp.mean_over_ranks(loss, run.info)
            total, count, seen = total + loss, count + 1, seen + per_batch * run.accumulate
            progress.update(loss, per_batch * share)
            if step % LOG_EVERY == 0:
                _check_finite(total, epoch, step, run)
            if log is not None and step % LOG_EVERY == 0:
                # One host-device sync per LOG_EVERY steps, not per step; TensorBoard only, so
                # metrics.jsonl keeps one record per epoch as before.
                log.scalars(kind="step", at=(epoch - 1) * steps + step + 1, epoch=epoch, step=step + 1,
                            loss=float(loss))
                if log.wants_images():
                    _log_images(log, *shown)
            if should_stop():
                _check_finite(total, epoch, step, run)
                run.epoch_loss = (float(total), count)
                return float(total) / max(count, 1), step + 1
    finally:
        progress.close()
    _check_finite(total, epoch, steps - 1, run)
    mean = float(total) / max(count, 1)          # synchronises once, before the clock stops
    run.last_rate = seen * run.info.world_size / max(time.time() - t0, 1e-9)
    return mean, None


def _one_step(run, order, epoch, step, batch, per_batch):
    """One optimizer step over ``run.accumulate`` batches; (the step's mean loss on the device,
    (inputs, target, output) of its last batch for TensorBoard)."""
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(run.accumulate):
        rank = ddp.virtual_rank(run.info.rank, run.accumulate, micro)
        lo = step * batch + rank * per_batch
        idx = order[lo:lo + per_batch].to(run.device)
        gen = batch_generator(run.device, run.seed, epoch - 1, step, rank)
        inputs, target, weight, _ = transforms.make_batch(
            run.train_data, idx, run.input_hw, run.sigma, gen=gen, aug=run.augment,
            use_dpg=run.use_dpg(epoch), train_occluded=run.train_occluded)
        if run.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        # Gradients are averaged over ranks once a step, not after every accumulated batch.
        last = micro == run.accumulate - 1
        with contextlib.nullcontext() if last else ddp.no_sync(run.model):
            with autocast(run.device, run.amp):
                out = run.model(inputs)
            loss = heatmaps.masked_mse(out, target, weight)
            (loss / run.accumulate).backward()
        loss_sum = loss_sum + loss.detach().float()
    run.optimizer.step()
    return loss_sum / run.accumulate, (inputs, target, out)


def _check_finite(total, epoch, step, run):
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
def validate(run, alpha=0.05):
    """(PCK, loss, empty-heatmap loss) on the validation frames with ground-truth boxes. PCK is
    AlphaPose's accuracy measure: keypoints within alpha * heatmap height (4 cells at 80x64);
    the empty-heatmap loss is what all-zero maps score, i.e. a network that learnt nothing."""
    # The bare module: only rank 0 validates, and a DDP forward would wait for the others.
    model, data = ckpt.unwrap(run.model), run.val_data
    model.eval()
    n = data["crops"].shape[0]
    hits, total, loss_sum, empty_sum = 0.0, 0.0, 0.0, 0.0
    for s in range(0, n, run.batch):
        idx = torch.arange(s, min(s + run.batch, n), device=run.device)
        inputs, target, weight, _ = transforms.make_batch(data, idx, run.input_hw, run.sigma,
                                                          train_occluded=run.train_occluded)
        if run.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(run.device, run.amp):
            out = model(inputs)
        loss_sum += float(heatmaps.masked_mse(out, target, weight)) * len(idx)
        empty_sum += float(heatmaps.masked_mse(torch.zeros_like(target), target, weight)) * len(idx)
        pred, _ = heatmaps.decode(out.float())
        true, _ = heatmaps.decode(target)
        ref = torch.full((len(idx),), float(target.shape[2]), device=run.device)
        w = weight * (target.amax(dim=(2, 3)) > 0.5).float()   # the target peak is on the map
        hits += heatmaps.pck(pred, true, w, ref, alpha) * float(w.sum())
        total += float(w.sum())
    model.train()
    return hits / max(total, 1.0), loss_sum / max(n, 1), empty_sum / max(n, 1)
