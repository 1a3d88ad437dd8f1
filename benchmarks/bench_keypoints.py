"""Training throughput of the keypoint localizer, end to end (data included), on one machine:
ours vs the kp6d recipe.

    python benchmarks/bench_keypoints.py                      # GPU: full size (320x256, SE-ResNet-101)
    python benchmarks/bench_keypoints.py --small              # CPU smoke run: 64x64, ResNet-50, tiny batches

kp6d recipe: fp32 (PyTorch defaults, so cuDNN may use TF32), SE-ResNet-101, batch 48, a
DataLoader whose workers decode the frame from disk and crop, rotate and draw heatmaps per
sample with OpenCV/numpy, as AlphaPose's loader does (its exact augmentation differs; the
work per sample is of the same kind).
Ours: pose-train's trainer step: prepared uint8 crops resident on the device, crops +
augmentation + DPG + Gaussian targets batched on the device, bf16 autocast and
channels_last on CUDA (fp32 on CPU), batch 128, optional torch.compile.
Both run on the same synthetic LINEMOD sequence (generated into a temp dir first).
"""
import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pose_train_py27.nets import FastPose  # noqa: E402
from pose_train.jobs import namespace  # noqa: E402
from pose_train.keypoints import data as kpdata, heatmaps, prepare, steps, synth, transforms  # noqa: E402


def make_data(tmp, args):
    root = os.path.join(tmp, "lm")
    synth.main(namespace("synth-linemod", out=root, n=args.frames, seq=1, seed=0, width=args.width,
                         height=args.height))
    prepare.main(namespace("prepare-keypoints", seq=1, kptype="fps", kpnum=args.kpnum, data=root,
                           outf=tmp, test_ratio=0.0, crop_size=args.crop_size))
    return root, prepare.prepared_dir(tmp, 1, "fps", args.kpnum)


class RecipeDataset(torch.utils.data.Dataset):
    """Per-sample CPU work in the style of AlphaPose's loader: decode, warp, numpy heatmaps."""

    def __init__(self, root, ann, input_hw, sigma=1.0):
        self.root, self.frames, self.input_hw, self.sigma = root, ann["frames"], input_hw, sigma
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return 10 ** 9  # sampled with replacement by index modulo

    def _heatmaps(self, kp_in):
        h, w = self.input_hw[0] // 4, self.input_hw[1] // 4
        tmp_size = 3 * self.sigma
        out = np.zeros((len(kp_in), h, w), np.float32)
        size = int(2 * tmp_size + 1)
        x = np.arange(size, dtype=np.float32)
        g = np.exp(-((x - tmp_size) ** 2)[None] / (2 * self.sigma ** 2) - ((x - tmp_size) ** 2)[:, None]
                   / (2 * self.sigma ** 2))
        for k, (u, v) in enumerate(kp_in / 4.0):
            ul = (int(u - tmp_size), int(v - tmp_size))
            if ul[0] >= w or ul[1] >= h or ul[0] + size < 0 or ul[1] + size < 0:
                continue
            gx0, gy0 = max(0, -ul[0]), max(0, -ul[1])
            x0, y0 = max(0, ul[0]), max(0, ul[1])
            x1, y1 = min(w, ul[0] + size), min(h, ul[1] + size)
            out[k, y0:y1, x0:x1] = g[gy0:gy0 + y1 - y0, gx0:gx0 + x1 - x0]
        return out

    def __getitem__(self, i):
        fr = self.frames[i % len(self.frames)]
        img = cv2.imread(os.path.join(self.root, fr["rgb"]))[:, :, ::-1]
        x, y, w, h = fr["bbox"]
        out_h, out_w = self.input_hw
        scale = max(w * 1.3 / out_w, h * 1.3 / out_h) * self.rng.uniform(0.75, 1.25)
        angle = self.rng.uniform(-40, 40) if self.rng.random() < 0.6 else 0.0
        M = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, 1.0 / scale)
        M[:, 2] += np.array([out_w / 2 - (x + w / 2), out_h / 2 - (y + h / 2)])
        crop = cv2.warpAffine(img, M, (out_w, out_h), flags=cv2.INTER_LINEAR)
        kp = np.array(fr["kp2d"]) @ M[:, :2].T + M[:, 2]
        inp = torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float32) / 255.0)
        inp = inp * torch.from_numpy(self.rng.uniform(0.8, 1.2, (3, 1, 1)).astype(np.float32))
        inp = inp - torch.tensor(transforms.MEAN).view(3, 1, 1)
        return inp, torch.from_numpy(self._heatmaps(kp))


def time_steps(step, warmup, steps, batch, device):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def bench_recipe(root, ann, args, device):
    net = FastPose(args.kpnum, architecture=args.arch).to(device).train()
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        RecipeDataset(root, ann, args.input_hw), batch_size=args.recipe_batch, num_workers=args.workers,
        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
        sampler=torch.utils.data.RandomSampler(range(len(ann["frames"])), replacement=True,
                                               num_samples=10 ** 9))
    batches = iter(loader)

    def step():
        inp, target = next(batches)
        inp, target = inp.to(device, non_blocking=True), target.to(device, non_blocking=True)
        loss = ((net(inp) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time_steps(step, args.warmup, args.steps, args.recipe_batch, device)


def bench_ours(ann, crops, args, device):
    data = kpdata.to_device(ann, crops, list(range(len(ann["frames"]))), device)
    net = FastPose(args.kpnum, architecture=args.arch).to(device).train()
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True   # as train.py does
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3)
    model = torch.compile(net) if args.compile else net
    gen = torch.Generator(device=device).manual_seed(0)
    aug, n = transforms.Augment(), len(ann["frames"])

    def step():
        idx = torch.randint(0, n, (args.batch,), device=device, generator=gen)
        inp, target, weight, _ = transforms.make_batch(data, idx, args.input_hw, 1.0, gen=gen, aug=aug,
                                                       use_dpg=True)
        if cuda:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with steps.autocast(device, "bf16"):
            out = model(inp)
        loss = heatmaps.masked_mse(out, target, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time_steps(step, args.warmup, args.steps, args.batch, device)


def bench_data_only(root, ann, crops, args, device):
    """Samples/s of the two data pipelines alone (no model): where the recipe starves a GPU."""
    loader = torch.utils.data.DataLoader(
        RecipeDataset(root, ann, args.input_hw), batch_size=args.recipe_batch, num_workers=args.workers,
        persistent_workers=args.workers > 0,
        sampler=torch.utils.data.RandomSampler(range(len(ann["frames"])), replacement=True,
                                               num_samples=10 ** 9))
    batches = iter(loader)
    recipe = time_steps(lambda: next(batches), args.warmup, args.steps, args.recipe_batch, device)
    data = kpdata.to_device(ann, crops, list(range(len(ann["frames"]))), device)
    gen = torch.Generator(device=device).manual_seed(0)
    n, aug = len(ann["frames"]), transforms.Augment()

    def ours_step():
        idx = torch.randint(0, n, (args.batch,), device=device, generator=gen)
        transforms.make_batch(data, idx, args.input_hw, 1.0, gen=gen, aug=aug, use_dpg=True)
    return recipe, time_steps(ours_step, args.warmup, args.steps, args.batch, device)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="CPU-sized run: 64x64, resnet50, batch 4")
    p.add_argument("--arch", default=None)
    p.add_argument("--input", default=None, help="HxW, multiples of 32 (default 320x256)")
    p.add_argument("--batch", type=int, default=None, help="ours (default 128)")
    p.add_argument("--recipe_batch", type=int, default=None, help="kp6d recipe (default 48)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--kpnum", type=int, default=17)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--data_only", action="store_true", help="time the two data pipelines, no model")
    args = p.parse_args(argv)
    small = dict(arch="resnet50", input="64x64", batch=4, recipe_batch=4, steps=3, warmup=1, frames=16)
    full = dict(arch="resnet101", input="320x256", batch=128, recipe_batch=48, steps=30, warmup=5, frames=200)
    for key, value in (small if args.small else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.input_hw = tuple(int(v) for v in args.input.split("x"))
    args.width, args.height = (320, 240) if args.small else (640, 480)
    args.crop_size = 96 if args.small else 384
    return args


def main(argv=None):
    args = parse(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root, folder = make_data(tmp, args)
        ann, crops = kpdata.load_prepared(folder)
        if args.data_only:
            recipe, ours = bench_data_only(root, ann, crops, args, device)
        else:
            recipe = bench_recipe(root, ann, args, device)
            ours = bench_ours(ann, crops, args, device)
    print("device: %s (%s), torch %s, %d CPU threads, %d loader workers"
          % (device, name, torch.__version__, torch.get_num_threads(), args.workers))
    if args.data_only:
        print("data only, %dx%d, %d keypoints: recipe CPU loader %.1f samples/s (batch %d); "
              "ours on %s %.1f samples/s (batch %d)" % (args.input_hw[0], args.input_hw[1], args.kpnum,
                                                        recipe, args.recipe_batch, device, ours, args.batch))
        return 0
    print("FastPose %s %dx%d, %d keypoints, %d steps after %d warm-up"
          % (args.arch, args.input_hw[0], args.input_hw[1], args.kpnum, args.steps, args.warmup))
    print("kp6d recipe (fp32, batch %d, CPU loader): %8.1f img/s" % (args.recipe_batch, recipe))
    print("pose-train (%s, batch %d, device-side data%s): %8.1f img/s"
          % ("bf16+channels_last" if device.type == "cuda" else "fp32", args.batch,
             ", compiled" if args.compile else "", ours))
    print("speed-up: %.2fx" % (ours / recipe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
