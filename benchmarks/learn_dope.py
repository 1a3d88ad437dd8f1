"""Does a DOPE trained by pose-train find its object in frames it never saw?

The product end to end, in this process, as a user runs it: `synth dope` writes a training set
and a held-out set from another seed; `train dope --val HELDOUT` trains the six-stage network
the node loads, validating on the held-out frames after every epoch (never training on them)
until the time runs out; `eval dope` then scores net_best.pth on the same held-out frames.

  # CPU, 2 cores (the README's figures): 128 px crops of 160x120 frames, object 16-24 cm away
  python benchmarks/learn_dope.py --minutes 45 --outf runs/learn-dope
  # GPU (benchmarks/gpu_session.sh learn-dope): the recipe's 400 px crops, bf16
  python benchmarks/learn_dope.py --minutes 6 --train 1500 --size 400 --frame 640x480 \\
      --distance 0.3,0.45 --batch 32 --lr 1e-4 --outf OUT

Object size against the crop: the trainer's crop spans the frame's shorter side, and a belief
map cell is 8 crop pixels. At 128 px crops of 160x120 frames (fx = 144 px), the 10 x 8 x 6 cm
box 16-24 cm away spans ~60-90 frame pixels = 8-12 cells; at the generator's default
0.35-0.9 m in 320x240 frames it spans 2-5 cells, too few for 8 separable corners.

Prints the per-epoch validation table and writes OUTF/learn_dope.json; plot it with
`python benchmarks/plot_learning.py OUTF/run/metrics.jsonl --out OUTF/learning.png`.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_train.cli import main as cli  # noqa: E402
from pose_train.training.metrics_log import read_metrics  # noqa: E402


def _parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=45.0, help="training time (validation "
                   "included); the trainer stops and saves before it")
    p.add_argument("--outf", required=True)
    p.add_argument("--train", type=int, default=400, help="synthetic training frames")
    p.add_argument("--heldout", type=int, default=24, help="held-out frames (another seed)")
    p.add_argument("--size", type=int, default=128, help="crop size (--imagesize)")
    p.add_argument("--frame", default="160x120", help="synthetic frame size WxH")
    p.add_argument("--distance", default="0.16,0.24", help="synth dope --distance (m)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--pretrained", default="none", help="train dope --pretrained")
    p.add_argument("--workers", type=int, default=1)
    return p.parse_args()


def _run(*argv):
    try:
        cli(["--local"] + [str(a) for a in argv])
    except SystemExit as err:
        if err.code:
            raise
    return 0


def table(records):
    """Markdown rows of the epoch records (the README's table)."""
    rows = ["| epoch | steps | val_loss | empty-map loss | peaks <= 2 cells | detected | "
            "ADD < 0.1 d | ADD AUC | median 2D px | val s (share of epoch) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        px = "-" if r.get("val_median_px") is None else "%.1f" % r["val_median_px"]
        rows.append("| %d | %d | %.5f | %.5f | %.1f%% | %.1f%% | %.1f%% | %.3f | %s | %.1f (%.0f%%) |"
                    % (r["epoch"], r["global_step"], r["val_loss"], r["val_empty_map_loss"],
                       100 * r["val_peaks_within_2px"], 100 * r["val_detection_rate"],
                       100 * r["val_add_01d"], r["val_add_auc"], px, r["val_seconds"],
                       100 * r["val_fraction_of_epoch"]))
    return "\n".join(rows)


def epoch_records(path):
    """Epoch records that carry validation figures, with the global step at their end."""
    out, steps = [], 0
    for r in read_metrics(path):
        if r["kind"] == "step":
            steps += 1
        elif r["kind"] == "epoch" and "val_loss" in r:
            out.append(dict(r, global_step=steps))
    return out


def main():
    args = _parse()
    width, height = args.frame.lower().split("x")
    data, held, run = (os.path.join(args.outf, n) for n in ("train", "heldout", "run"))
    for folder, n, seed in ((data, args.train, 1), (held, args.heldout, 99)):
        if not os.path.isdir(folder):
            _run("synth", "dope", "--out", folder, "--n", n, "--seed", seed, "--width", width,
                 "--height", height, "--distance", args.distance)
    started = time.time()
    _run("train", "dope", "--data", data, "--val", held, "--object", "cube", "--outf", run,
         "--epochs", 100000, "--imagesize", args.size, "--batchsize", args.batch, "--lr",
         args.lr, "--pretrained", args.pretrained, "--workers", args.workers,
         "--time_limit", args.minutes / 60.0, "--resume", "auto")
    minutes = (time.time() - started) / 60.0
    best = os.path.join(run, "net_best.pth")
    _run("eval", "dope", best, "--data", held, "--object", "cube", "--outf",
         os.path.join(args.outf, "eval-heldout"))
    with open(os.path.join(args.outf, "eval-heldout", "results.json")) as f:
        summary = json.load(f)["summary"]
    records = epoch_records(os.path.join(run, "metrics.jsonl"))
    result = {"command": " ".join(sys.argv), "minutes_this_call": round(minutes, 1),
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "threads": torch.get_num_threads(), "eval_heldout": summary, "epochs": records,
              "goal": {"detection_rate": 0.8, "add_below_0.1d": 0.3, "median_reproj_px": 4.0}}
    print(table(records))
    print("eval dope on the %d held-out frames (net_best.pth): %s"
          % (args.heldout, json.dumps(summary)))
    with open(os.path.join(args.outf, "learn_dope.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
