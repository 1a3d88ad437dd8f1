"""Does DOPE learn? Train on synthetic cuboids for a few minutes, score held-out images.

Criterion (issue 3): the final-stage belief-map peaks land within 2 output pixels of the true
keypoints for >= 90% of the visible keypoints on held-out synthetic images.

  python benchmarks/learn_dope.py --minutes 10            # on a GPU (bf16 + channels_last)
  python benchmarks/learn_dope.py --minutes 1 --size 64 --train 64 --heldout 16 --batch 4  # CPU smoke
  python benchmarks/learn_dope.py --minutes 20 --size 128 --frame 320x240 --train 8 \
      --heldout 8 --batch 8 --outf runs/overfit     # CPU: overfit a handful, then eval dope

With --outf the weights are saved as the trainer saves them (net_epoch_01.pth + sidecar) and
scored with `pose-train eval dope` on the training and held-out frames (results.md in
OUTF/eval-train and OUTF/eval-heldout): detection rate, ADD < 0.1 d, 2D error.

Uses the trainer's own pieces (scan, DopeDataset, engine) so it measures what `train dope` does.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_train_py27.nets import DopeNetwork  # noqa: E402
from pose_train.dope.checkpoints import load_pretrained_vgg  # noqa: E402
from pose_train.dope.data import scan  # noqa: E402
from pose_train.dope.engine import StepConfig, evaluate  # noqa: E402
from pose_train.dope.loader import (DopeDataset, EpochSampler, default_workers,  # noqa: E402
                                    make_loader)
from pose_train.dope.synth import write_dataset  # noqa: E402
from dope_steps import train_step  # noqa: E402


def _parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--size", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train", type=int, default=2000, help="synthetic training frames")
    p.add_argument("--heldout", type=int, default=200, help="held-out frames (other seed)")
    p.add_argument("--pretrained", default=None, help="local ImageNet VGG-19 state dict")
    p.add_argument("--init", default=None, help="DOPE weights to continue from (a previous "
                   "run's net_epoch_01.pth)")
    p.add_argument("--workdir", default=None, help="keep the frames here (default: temp)")
    p.add_argument("--frame", default="640x480", help="synthetic frame size WxH")
    p.add_argument("--outf", default=None, help="save the weights here and run eval dope")
    p.add_argument("--json", default=None)
    return p.parse_args()


def _set(root, name, n, seed, size, frame):
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        width, height = (int(v) for v in frame.lower().split("x"))
        write_dataset(path, n, seed=seed, width=width, height=height)
    return scan([path], "cube", size)[0]


def main():
    args = _parse()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    root = args.workdir or tempfile.mkdtemp(prefix="learn-dope-")
    train_samples = _set(root, "train", args.train, 1, args.size, args.frame)
    train_set = DopeDataset(train_samples, args.size, seed=0)
    held = DopeDataset(_set(root, "heldout", args.heldout, 99, args.size, args.frame), args.size,
                       train=False)
    torch.manual_seed(0)
    model = DopeNetwork().to(device)
    if args.pretrained:
        load_pretrained_vgg(model, args.pretrained)
    if args.init:
        from pose_train.dope.checkpoints import load_weights_into
        load_weights_into(model, args.init)
    cfg = StepConfig(device=device, sigma=0.5, amp_dtype=torch.bfloat16 if cuda else None,
                     channels_last=cuda)
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    workers = default_workers()
    deadline, step, epoch, t0 = time.time() + 60 * args.minutes, 0, 0, time.time()
    sampler = EpochSampler(torch.utils.data.RandomSampler(train_set))
    loader = make_loader(train_set, sampler, args.batch, workers, pin_memory=cuda)
    while time.time() < deadline:
        epoch += 1
        sampler.set_epoch(epoch)
        for batch in loader:
            loss = train_step(model, opt, batch, cfg, epoch, step)[0]
            step += 1
            if step % 50 == 0:
                print("step %d epoch %d loss %.5f (%.0f s)" % (step, epoch, loss.item(),
                                                              time.time() - t0), flush=True)
            if time.time() >= deadline:
                break
    scores = evaluate(model, make_loader(held, None, args.batch, workers, drop_last=False), cfg)
    result = dict(scores, steps=step, epochs=epoch, minutes=args.minutes, size=args.size,
                  device=torch.cuda.get_device_name(device) if cuda else "cpu",
                  passed=scores["peak_within_2px"] >= 0.9)
    if args.outf:
        result["eval"] = _save_and_eval(args, model, train_samples, root)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def _save_and_eval(args, model, samples, root):
    """Weights + sidecar as `train dope` writes them, then `eval dope` on both sets."""
    from pose_train.dope.checkpoints import save_epoch_weights
    from pose_train.dope.data import dimensions_of
    from pose_train.jobs import namespace
    from pose_train_py27.sidecar import dope_meta
    width, height = (int(v) for v in args.frame.lower().split("x"))
    meta = dope_meta("cube", args.size, "ros", 0.5, [100.0 * v for v in dimensions_of(samples)],
                     [width, height])
    os.makedirs(args.outf, exist_ok=True)
    weights = save_epoch_weights(args.outf, model.cpu(), 1, meta)
    print("saved %s" % weights, flush=True)
    from pose_train.dope.evaluate import main as eval_main
    scores = {}
    for name in ("train", "heldout"):
        out = os.path.join(args.outf, "eval-" + name)
        eval_main(namespace("eval-dope", weights=weights, data=[os.path.join(root, name)],
                            object="cube", outf=out))
        with open(os.path.join(out, "results.json")) as f:
            scores[name] = json.load(f)["summary"]
    return scores


if __name__ == "__main__":
    main()
