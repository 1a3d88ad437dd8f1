"""DOPE speed, ours vs the DOPE recipe, side by side in one run.

  model step      img/s, synthetic tensors: ours (bf16 autocast + channels_last on CUDA,
                  optional torch.compile, --batch) vs DOPE (fp32, NCHW, --dope-batch 32)
  data pipeline   img/s per CPU core (one process, one thread) on PNG frames written by
                  `synth dope`: ours (decode + one affine warp per sample; photometric + targets
                  batch-wise, timed separately on the device) vs DOPE's per-sample CPU recipe
  end-to-end      img/s of the real training step fed by a DataLoader with --workers processes

GPU (defaults are the DOPE recipe's sizes):  python benchmarks/bench_dope.py --compile
CPU smoke (what runs on a 2-core box):
  python benchmarks/bench_dope.py --size 64 --batch 4 --dope-batch 4 --steps 3 --images 24
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import cv2
import torch
from torch.utils.data import DataLoader, default_collate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.dope_recipe import DopeRecipeDataset, recipe_loss  # noqa: E402
from pose_train_py27.nets import DopeNetwork  # noqa: E402
from pose_train.dope.data import scan  # noqa: E402
from pose_train.dope.steps import StepConfig, forward_loss, prepare_batch  # noqa: E402
from pose_train.dope.loader import (DecodedCache, DopeDataset, default_workers,  # noqa: E402
                                    device_warp_pays, make_loader)
from pose_train.dope.synth import write_dataset  # noqa: E402
from pose_train.dope.targets import make_targets  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step, steps, warmup, device):
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0


def _synthetic_batch(batch, size, device):
    images = torch.randn(batch, 3, size, size, device=device)
    pts = torch.rand(batch, 1, 9, 2, device=device) * size
    beliefs, affinities = make_targets(pts, torch.ones(batch, 1, dtype=torch.bool, device=device),
                                       (size // 8, size // 8), sigma=0.5)
    return images, beliefs, affinities


def model_step(args, device, ours):
    """img/s of forward + backward + Adam on synthetic tensors."""
    torch.manual_seed(0)
    model = DopeNetwork().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = args.batch if ours else args.dope_batch
    images, beliefs, affinities = _synthetic_batch(batch, args.size, device)
    cfg = StepConfig(device=device, sigma=0.5)
    net = model
    if ours and device.type == "cuda":
        cfg.amp_dtype, cfg.channels_last = torch.bfloat16, True
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        if args.compile:
            net = torch.compile(model)

    def step():
        loss = (forward_loss(net, images, beliefs, affinities, cfg)[0] if ours
                else recipe_loss(net, images, beliefs, affinities))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = _timed_steps(step, args.steps, args.warmup, device)
    return batch * args.steps / seconds


def data_per_core(args, samples, device, tmp):
    """Single-process throughput: what one loader core sustains, ours vs the recipe."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    n = len(samples)
    t0 = time.perf_counter()
    for s in samples:
        cv2.imread(s.image, cv2.IMREAD_COLOR)
    decode = (time.perf_counter() - t0) / n

    recipe = DopeRecipeDataset(samples, crop=args.size)
    t0 = time.perf_counter()
    for i in range(0, n, args.dope_batch):
        default_collate([recipe[j] for j in range(i, min(n, i + args.dope_batch))])
    recipe_rate = n / (time.perf_counter() - t0)

    ours = DopeDataset(samples, args.size, seed=0)
    batches = []
    t0 = time.perf_counter()
    for i in range(0, n, args.batch):
        batches.append(default_collate([ours[j] for j in range(i, min(n, i + args.batch))]))
    worker_rate = n / (time.perf_counter() - t0)
    cache = DecodedCache(os.path.join(tmp, "decoded.u8"), [s.size for s in samples]).create()
    cached = DopeDataset(samples, args.size, seed=0, cache=cache)
    for j in range(n):              # epoch 1 fills the cache
        cached[j]
    cached_rate = _per_sample_rate(cached, args.batch)
    # CUDA mode for same-size frames: workers ship whole frames, the GPU cuts the crops.
    frames_rate = _per_sample_rate(DopeDataset(samples, args.size, device_warp=True), args.batch)
    frames_cached_rate = _per_sample_rate(DopeDataset(samples, args.size, cache=cache,
                                                      device_warp=True), args.batch)
    cfg = StepConfig(device=device, sigma=0.5)
    batch_seconds = _timed_steps(lambda: [prepare_batch(b, cfg, 1, 0) for b in batches], 1, 1,
                                 device)
    return {"decode_ms": decode * 1e3, "recipe": recipe_rate, "ours_worker": worker_rate,
            "ours_worker_cached": cached_rate, "ours_frames": frames_rate,
            "ours_frames_cached": frames_cached_rate,
            "ours_batch_ops_img_per_s": n / batch_seconds,
            "ours_all_on_cpu": 1.0 / (1.0 / worker_rate + batch_seconds / n)
            if device.type == "cpu" else None}


def _per_sample_rate(dataset, batch):
    n = len(dataset)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        default_collate([dataset[j] for j in range(i, min(n, i + batch))])
    return n / (time.perf_counter() - t0)


def end_to_end(args, samples, device, ours):
    """img/s of real training steps fed by a DataLoader (after --warmup steps)."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - (args.workers or 0)))
    torch.manual_seed(0)
    model = DopeNetwork().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    cfg = StepConfig(device=device, sigma=0.5)
    if ours:
        if device.type == "cuda":
            cfg.amp_dtype, cfg.channels_last = torch.bfloat16, True
            model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if args.compile and device.type == "cuda" else model
        cfg.crop_size = args.size
        warp_on_gpu = device.type == "cuda" and device_warp_pays(samples, args.size)
        loader = make_loader(DopeDataset(samples, args.size, device_warp=warp_on_gpu), None,
                             args.batch, args.workers, pin_memory=device.type == "cuda")
    else:
        net = model
        loader = DataLoader(DopeRecipeDataset(samples, args.size), batch_size=args.dope_batch,
                            shuffle=True, num_workers=args.workers, drop_last=True)
    done, t0, seen = 0, None, 0
    while done < args.steps + args.warmup:
        for batch in loader:
            if ours:
                images, tb, ta, _, _ = prepare_batch(batch, cfg, 1, done)
                loss = forward_loss(net, images, tb, ta, cfg)[0]
            else:
                images, tb, ta = (t.to(device, non_blocking=True) for t in batch)
                loss = recipe_loss(net, images, tb, ta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == args.warmup:
                _sync(device)
                t0 = time.perf_counter()
            elif done > args.warmup:
                seen += images.shape[0]
            if done >= args.steps + args.warmup:
                break
    _sync(device)
    return seen / (time.perf_counter() - t0)


def _parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=400, help="crop size (DOPE: 400)")
    p.add_argument("--batch", type=int, default=64, help="our batch size")
    p.add_argument("--dope-batch", type=int, default=32, help="the DOPE recipe's batch size")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--images", type=int, default=128, help="synthetic PNG frames to generate")
    p.add_argument("--frame", default="640x480", help="synthetic frame size WxH")
    p.add_argument("--data", default=None, help="use this DOPE dataset instead of synthetic")
    p.add_argument("--object", default="cube")
    p.add_argument("--workers", type=int, default=None, help="end-to-end loader workers")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (CUDA)")
    p.add_argument("--skip", default="", help="comma list of: model,data,e2e,e2e-recipe")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args()


def _samples(args, tmp):
    if args.data:
        root = args.data
    else:
        w, h = (int(v) for v in args.frame.lower().split("x"))
        root = write_dataset(os.path.join(tmp, "frames"), args.images, seed=0, width=w, height=h,
                             object_name=args.object, progress=False)
    samples, _ = scan([root], args.object, args.size)
    return samples[:args.images]


def _row(name, ours, recipe, unit):
    fmt = lambda v: "-" if v is None else "%.1f" % v
    ratio = "" if not ours or not recipe else "%.1fx" % (ours / recipe)
    return "%-42s %12s %12s %7s  %s" % (name, fmt(ours), fmt(recipe), ratio, unit)


def main():
    args = _parse()
    skip = set(filter(None, args.skip.split(",")))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.workers = default_workers() if args.workers is None else args.workers
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else
               "CPU %s" % (platform.processor() or platform.machine()))
    res = {"device": machine, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
           "size": args.size, "batch": args.batch, "dope_batch": args.dope_batch}
    with tempfile.TemporaryDirectory() as tmp:
        samples = _samples(args, tmp)
        res["images"] = len(samples)
        if "model" not in skip:
            res["model_ours"] = model_step(args, device, ours=True)
            res["model_recipe"] = model_step(args, device, ours=False)
        if "data" not in skip:
            res["data"] = data_per_core(args, samples, device, tmp)
        if "e2e" not in skip:
            res["e2e_ours"] = end_to_end(args, samples, device, ours=True)
            if "e2e-recipe" not in skip:
                res["e2e_recipe"] = end_to_end(args, samples, device, ours=False)
    _report(res, args, device)


def _report(res, args, device):
    amp = "bf16+channels_last" + ("+compile" if args.compile else "") if device.type == "cuda" \
        else "fp32 (CPU)"
    print("DOPE benchmark on %s (%s cores), torch %s, crop %d px, %d frames"
          % (res["device"], res["cpu_cores"], res["torch"], args.size, res["images"]))
    print("%-42s %12s %12s %7s" % ("", "ours", "DOPE recipe", "ratio"))
    if "model_ours" in res:
        print(_row("model step (img/s)", res["model_ours"], res["model_recipe"],
                   "ours %s batch %d | recipe fp32 batch %d" % (amp, args.batch, args.dope_batch)))
    if "data" in res:
        d = res["data"]
        print(_row("data pipeline, CPU part (img/s/core)", d["ours_worker"], d["recipe"],
                   "decode alone %.2f ms/frame" % d["decode_ms"]))
        print(_row("  same, frames from the decoded cache", d["ours_worker_cached"], d["recipe"],
                   "epochs 2+ with --decode_cache auto"))
        print(_row("  CUDA mode: whole frames, GPU cuts crops", d["ours_frames"], d["recipe"],
                   "same-size frames <= 4x the crop"))
        print(_row("  CUDA mode, frames from the decoded cache", d["ours_frames_cached"],
                   d["recipe"], ""))
        if d["ours_all_on_cpu"] is not None:
            print(_row("data pipeline, all on CPU (img/s/core)", d["ours_all_on_cpu"],
                       d["recipe"], "our batch ops on the CPU too"))
        print(_row("batch augment+targets on %s (img/s)" % device.type,
                   d["ours_batch_ops_img_per_s"], None, ""))
    if "e2e_ours" in res:
        print(_row("end-to-end (img/s)", res["e2e_ours"], res.get("e2e_recipe"),
                   "%d loader workers" % args.workers))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
