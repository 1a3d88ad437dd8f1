"""Does the keypoint localizer learn? Synthetic LINEMOD -> prepare -> train for a few minutes
-> PnP evaluation on the held-out split: PCK, 2D projection (< 5 px) and ADD (< 0.1 d).

  python benchmarks/learn_keypoints.py --minutes 8                      # GPU: 320x256, SE-ResNet-101
  python benchmarks/learn_keypoints.py --minutes 20 --input 64x64 --arch resnet50 --batch 16   # CPU

Runs the same functions `pose-train synth linemod`, `prepare keypoints`, `train keypoints`
and `eval keypoints` run (no fire needed, so it also runs where only torch is installed).
The training stops at --minutes through the trainer's own --time_limit; the best weights by
validation PCK are evaluated. Prints the per-epoch log, the result table and one JSON line.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_train.jobs import namespace  # noqa: E402
from pose_train.keypoints import evaluate, prepare, synth, train  # noqa: E402
from pose_train.training.metrics_log import read_metrics  # noqa: E402


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=8.0, help="training time (the trainer's --time_limit)")
    p.add_argument("--frames", type=int, default=1200, help="synthetic frames (75%% train, 25%% held out)")
    p.add_argument("--frame", default="640x480", help="synthetic frame size WxH")
    p.add_argument("--epochs", type=int, default=100000, help="also stop after this many epochs")
    p.add_argument("--kptype", default="fps")
    p.add_argument("--kpnum", type=int, default=17)
    p.add_argument("--arch", default="resnet101")
    p.add_argument("--input", default="320x256", help="HxW, multiples of 32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--opt", default="adam", help="--optMethod")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workdir", default=None, help="keep data and run here (default: temp)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def _train_args(args, data, outf):
    h, w = (int(v) for v in args.input.lower().split("x"))
    return namespace("train-keypoints", kptype=args.kptype, opt_method=args.opt,
                     train_batch=args.batch, data=data, outf=outf, epochs=args.epochs, lr=args.lr,
                     arch=args.arch, input_res_h=h, input_res_w=w, compile=args.compile,
                     time_limit=args.minutes / 60.0, snapshot=0)


def main(argv=None):
    args = _parse(argv)
    root = args.workdir or tempfile.mkdtemp(prefix="learn-kp-")
    lm, kp, run = (os.path.join(root, name) for name in ("lm", "kp", "run"))
    if not os.path.isdir(lm):
        width, height = (int(v) for v in args.frame.lower().split("x"))
        synth.main(namespace("synth-linemod", out=lm, n=args.frames, seq=1, seed=3, width=width,
                             height=height))
    prepare.main(namespace("prepare-keypoints", seq=1, kptype=args.kptype, kpnum=args.kpnum,
                           data=lm, outf=kp, test_ratio=0.25, crop_size=384))
    t0 = time.time()
    train.main(_train_args(args, kp, run))
    minutes = (time.time() - t0) / 60.0
    out = os.path.join(run, "eval")
    evaluate.main(namespace("eval-keypoints", model=os.path.join(run, "best.pkl"), data=kp,
                            outf=out, seq=1, kptype=args.kptype))
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    epochs = read_metrics(os.path.join(run, "metrics.jsonl"))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (%d threads)" % (
        torch.get_num_threads())
    summary = {"device": device, "torch": torch.__version__, "minutes": round(minutes, 2),
               "epochs": len(epochs), "best_val_pck": max((e["val_pck"] for e in epochs), default=None),
               "img_per_s": epochs[-1]["img_per_s"] if epochs else None, "results": results,
               "args": vars(args)}
    print(json.dumps(summary, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
