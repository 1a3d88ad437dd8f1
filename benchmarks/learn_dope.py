"""Does a DOPE trained by pose-train find its object in frames it never saw? Recipes side by side.

The product end to end, as a user runs it: `synth dope` writes a training set and a held-out
set from another seed; `train dope --recipe R --val HELDOUT` trains the six-stage network the
node loads, validating on the held-out frames after every epoch (never training on them);
`eval dope` then scores each recipe's net_best.pth on the same held-out frames. The recipes
train at the same time from the same frames and the same initial weights (--seed), with the
cores split between them, so their curves are comparable minute for minute.

  # CPU, 2 cores (the README's figures): both recipes, one core each
  python benchmarks/learn_dope.py --recipe fast,dope --steps fast=1500,dope=600 --outf runs/learn-dope
  # your own mesh (the embedded carton here)
  python benchmarks/learn_dope.py --mesh pose_train/dope/assets/carton/carton.obj --outf runs/carton
  # GPU (benchmarks/gpu_session.sh learn-dope): the recipe's 400 px crops, bf16
  python benchmarks/learn_dope.py --steps 1500 --train 1500 --size 400 --frame 640x480 \\
      --distance 0.3,0.45 --batch 32 --outf OUT

Object size against the crop: the trainer's crop spans the frame's shorter side, and a belief
map cell is 8 crop pixels. At 128 px crops of 160x120 frames (fx = 144 px), an object 10 cm
across 16-24 cm away spans ~60-90 frame pixels = 8-12 cells.

Prints each recipe's validation table and the eval of its net_best.pth, writes
OUTF/learn_dope.json and, where matplotlib is installed, OUTF/learning.png (both curves;
`python benchmarks/learn_dope.py --replot OUTF/learn_dope.json OUT.png` draws it again).
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_train.training.metrics_log import read_metrics  # noqa: E402

GOAL = {"detection_rate": 0.8, "add_below_0.1d": 0.3, "median_reproj_px": 4.0}


def _parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", default="fast,dope", help="recipes to compare, comma-separated")
    p.add_argument("--steps", default="600", help="optimizer steps per recipe (whole epochs: "
                   "rounded up), which its learning-rate schedule spans: N for every recipe, or "
                   "RECIPE=N,... to give each the steps it does in the same minutes")
    p.add_argument("--minutes", type=float, default=90.0, help="a time limit per recipe on top")
    p.add_argument("--outf", required=True)
    p.add_argument("--train", type=int, default=400, help="synthetic training frames")
    p.add_argument("--heldout", type=int, default=24, help="held-out frames (another seed)")
    p.add_argument("--size", type=int, default=128, help="crop size (--imagesize)")
    p.add_argument("--frame", default="160x120", help="synthetic frame size WxH")
    p.add_argument("--distance", default="0.16,0.24", help="synth dope --distance (m)")
    p.add_argument("--mesh", help="synth dope --mesh: your object instead of textured cuboids")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, help="train dope --lr (default: each recipe's own)")
    p.add_argument("--pretrained", default="none", help="train dope --pretrained")
    p.add_argument("--seed", type=int, default=0, help="train dope --seed: the initial weights")
    p.add_argument("--workers", type=int, default=1, help="train dope --workers, per recipe")
    return p.parse_args()


CHILDREN = []


def _cli(*argv, env=None):
    """``pose-train --local ARGV`` in a child process (the trainer owns its signals and threads)."""
    command = [sys.executable, "-m", "pose_train.cli", "--local"] + [str(a) for a in argv]
    CHILDREN.append(subprocess.Popen(command, env=env))
    return CHILDREN[-1]


def _pass_on(signum, frame):
    """A SIGTERM or SIGHUP to this script reaches its trainers, which save and end; the
    benchmark then scores what they have (as when --minutes runs out). A terminal's Ctrl-C
    reaches them already (one process group)."""
    for child in CHILDREN:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)


def _check(proc, what):
    if proc.wait() != 0:
        sys.exit("learn_dope: %s failed (exit %d)" % (what, proc.returncode))


def _object_name(args):
    return os.path.splitext(os.path.basename(args.mesh))[0] if args.mesh else "cube"


def make_data(args, data, held):
    width, height = args.frame.lower().split("x")
    mesh = ["--mesh", args.mesh] if args.mesh else []
    for folder, n, seed in ((data, args.train, 1), (held, args.heldout, 99)):
        if not os.path.isdir(folder):
            _check(_cli("synth", "dope", "--out", folder, "--n", n, "--seed", seed, "--width",
                        width, "--height", height, "--distance", args.distance, *mesh), "synth dope")


def steps_of(text, recipes):
    """--steps: {recipe: steps}."""
    if "=" not in text:
        return {r: int(text) for r in recipes}
    given = dict((k.strip(), int(v)) for k, v in (kv.split("=") for kv in text.split(",")))
    missing = [r for r in recipes if r not in given]
    if missing:
        sys.exit("learn_dope: --steps names no steps for %s" % ", ".join(missing))
    return given


def train_all(args, recipes, data, held):
    """Every recipe at once, the cores split evenly; {recipe: run folder}."""
    steps = steps_of(args.steps, recipes)
    threads = max(1, (os.cpu_count() or 1) // len(recipes))
    runs, procs = {}, []
    for recipe in recipes:
        runs[recipe] = os.path.join(args.outf, "run-" + recipe)
        lr = ["--lr", args.lr] if args.lr else []
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        epochs = max(1, math.ceil(steps[recipe] / float(max(1, args.train // args.batch))))
        procs.append((recipe, _cli(
            "train", "dope", "--recipe", recipe, "--data", data, "--val", held, "--object",
            _object_name(args), "--outf", runs[recipe], "--epochs", epochs, "--imagesize", args.size,
            "--batchsize", args.batch, "--pretrained", args.pretrained, "--workers", args.workers,
            "--seed", args.seed, "--time_limit", args.minutes / 60.0, "--resume", "auto", *lr, env=env)))
    for recipe, proc in procs:
        _check(proc, "train dope --recipe " + recipe)
    return runs


def evaluate(args, run, held):
    """eval dope's summary of the run's net_best.pth; None when the run was stopped before its
    first validation wrote one."""
    if not os.path.isfile(os.path.join(run, "net_best.pth")):
        print("learn_dope: %s has no net_best.pth (stopped before its first validation): not scored" % run)
        return None
    out = os.path.join(run, "eval-heldout")
    _check(_cli("eval", "dope", os.path.join(run, "net_best.pth"), "--data", held, "--object",
                _object_name(args), "--outf", out), "eval dope")
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["summary"]


def epoch_records(path):
    """Epoch records with validation figures, with the global step and the minutes (training
    and validation) at their end."""
    out, steps, seconds = [], 0, 0.0
    for r in read_metrics(path):
        if r["kind"] == "step":
            steps += 1
        elif r["kind"] == "epoch":
            seconds += r.get("seconds", 0.0) + (r.get("val_seconds") or 0.0)
            if "val_loss" in r:
                out.append(dict(r, global_step=steps, minutes=round(seconds / 60.0, 2)))
    return out


def table(records):
    """Markdown rows of the epoch records (the README's tables)."""
    rows = ["| epoch | steps | minutes | val_loss / empty-map loss | peaks <= 2 cells | detected "
            "| false pos. | ADD < 0.1 d | median 2D px |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        px = "-" if r.get("val_median_px") is None else "%.1f" % r["val_median_px"]
        rows.append("| %d | %d | %.1f | %.3f | %.1f%% | %.1f%% | %s | %.1f%% | %s |" % (
            r["epoch"], r["global_step"], r["minutes"], r["val_loss"] / r["val_empty_map_loss"],
            100 * r["val_peaks_within_2px"], 100 * r["val_detection_rate"],
            r.get("val_false_positives", "-"), 100 * r["val_add_01d"], px))
    return "\n".join(rows)


def plot(curves, path):
    """Both curves on one figure (matplotlib is a benchmark tool, not in the images)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("learn_dope: matplotlib not installed; no plot (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for recipe, records in curves.items():
        minutes = [r["minutes"] for r in records]
        axes[0].plot(minutes, [r["val_loss"] / r["val_empty_map_loss"] for r in records], "o-", label=recipe)
        axes[1].plot(minutes, [100 * r["val_detection_rate"] for r in records], "o-", label=recipe)
        axes[2].plot(minutes, [100 * r["val_peaks_within_2px"] for r in records], "o-", label=recipe)
    for ax, title in zip(axes, ("held-out loss / empty-map loss", "held-out detected %",
                                "held-out belief peaks within 2 cells %")):
        ax.set_title(title)
        ax.set_xlabel("minutes of training (validation included)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def replot(json_path, png):
    """The plot again from a learn_dope.json (``--replot JSON PNG``)."""
    with open(json_path) as f:
        result = json.load(f)
    return plot({r: v["epochs"] for r, v in result["recipes"].items()}, png)


def main():
    if sys.argv[1:2] == ["--replot"]:
        print(replot(*sys.argv[2:4]))
        return
    args = _parse()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _pass_on)
    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    data, held = os.path.join(args.outf, "train"), os.path.join(args.outf, "heldout")
    make_data(args, data, held)
    started = time.time()
    runs = train_all(args, recipes, data, held)
    minutes = (time.time() - started) / 60.0
    result = {"command": " ".join(sys.argv), "minutes_this_call": round(minutes, 1),
              "cpus": os.cpu_count(), "goal": GOAL, "recipes": {}}
    curves = {}
    for recipe in recipes:
        curves[recipe] = epoch_records(os.path.join(runs[recipe], "metrics.jsonl"))
        summary = evaluate(args, runs[recipe], held)
        result["recipes"][recipe] = {"eval_heldout": summary, "epochs": curves[recipe]}
        print("\n## --recipe %s\n\n%s\n\neval dope of net_best.pth on the %d held-out frames: %s"
              % (recipe, table(curves[recipe]), args.heldout, json.dumps(summary)))
    result["plot"] = plot(curves, os.path.join(args.outf, "learning.png"))
    with open(os.path.join(args.outf, "learn_dope.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
