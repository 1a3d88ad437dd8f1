"""DOPE's trunk init, side by side: PyTorch's default Conv2d init vs torchvision's VGG init
(what DOPE's trunk gets from models.vgg19(), and what pose_train_py27.nets now uses).

Same data, seed, steps and optimizer (DOPE's Adam 1e-4) for both; prints, per init, the image
signal left at the end of the trunk, the training loss against the empty-map loss, and how much
the final belief maps depend on the image.

  python benchmarks/dope_init.py --steps 150 --size 64 --frames 120 --batch 8    # CPU, minutes
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_train_py27.nets import DopeNetwork  # noqa: E402
from pose_train.dope.data import scan  # noqa: E402
from pose_train.dope.steps import StepConfig, dope_loss  # noqa: E402
from pose_train.dope.loader import DopeDataset, EpochBatches, make_loader  # noqa: E402
from pose_train.dope.synth import write_dataset  # noqa: E402
from dope_steps import train_step  # noqa: E402


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--size", type=int, default=64, help="crop side")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--batch", type=int, default=8)
    return p.parse_args(argv)


def _model(init):
    torch.manual_seed(0)
    net = DopeNetwork()
    if init == "pytorch-default":
        for layer in list(net.vgg)[:23]:       # DOPE's VGG part; the adapter keeps its init
            if isinstance(layer, torch.nn.Conv2d):
                layer.reset_parameters()
    return net


def _run(init, dataset, args):
    net, cfg = _model(init), StepConfig(device=torch.device("cpu"), sigma=0.5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    sampler = EpochBatches([torch.utils.data.RandomSampler(dataset)], args.batch)
    loader = make_loader(dataset, sampler, args.batch, 0)
    step, epoch, losses, empties, t0 = 0, 0, [], [], time.time()
    while step < args.steps:
        epoch += 1
        sampler.set_epoch(epoch)
        for batch in loader:
            loss, final, images, tb, ta = train_step(net, opt, batch, cfg, epoch, step)
            zeros = [torch.zeros_like(tb)] * 6, [torch.zeros_like(ta)] * 6
            losses.append(loss.item())
            empties.append(dope_loss(zeros[0], zeros[1], tb, ta).item())
            step += 1
            if step >= args.steps:
                break
    with torch.no_grad():
        trunk = net.vgg(images)
    tail = max(1, len(losses) // 5)           # the last fifth of the steps
    return {"init": init, "trunk_std_over_images": float(trunk.std(0).mean()),
            "loss_last_fifth": sum(losses[-tail:]) / tail,
            "empty_map_loss": sum(empties[-tail:]) / tail,
            "belief_std_over_images": float(final.detach().float().std(0).mean()),
            "seconds": round(time.time() - t0, 1)}


def main(argv=None):
    args = _parse(argv)
    root = tempfile.mkdtemp(prefix="dope-init-")
    write_dataset(root, args.frames, seed=1, width=160, height=120, progress=False)
    dataset = DopeDataset(scan([root], "cube", args.size)[0], args.size, seed=0)
    rows = [_run(init, dataset, args) for init in ("pytorch-default", "torchvision-vgg")]
    print("%-16s %12s %12s %12s %12s %8s" % ("trunk init", "trunk std", "loss", "empty-map",
                                             "belief std", "seconds"))
    for r in rows:
        print("%-16s %12.3g %12.5f %12.5f %12.3g %8.1f" % (
            r["init"], r["trunk_std_over_images"], r["loss_last_fifth"], r["empty_map_loss"],
            r["belief_std_over_images"], r["seconds"]))
    return rows


if __name__ == "__main__":
    main()
