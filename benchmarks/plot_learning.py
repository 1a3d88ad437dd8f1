"""Plot a `train dope` run's validation from its metrics.jsonl: val_loss against the loss
all-zero maps get (a network that learnt nothing sits on that line), and val_add_01d
(held-out objects posed within 0.1 x diameter), both against training steps.

  pip install matplotlib          # a benchmark tool: not in the images' locks
  python benchmarks/plot_learning.py runs/learn-dope/run/metrics.jsonl --out learning.png
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def points(path):
    """(steps, records) of the validation records, at the global step each was taken."""
    steps, out = 0, []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue          # a half-written last line from a kill
            if r.get("kind") == "step":
                steps += 1
            elif r.get("kind") in ("epoch", "val") and "val_loss" in r:
                out.append((steps, r))
    return out


def plot(path, out, title=None):
    data = points(path)
    if not data:
        raise SystemExit("%s: no validation records (train dope writes them each epoch)" % path)
    steps = [s for s, _ in data]
    fig, loss_ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    loss_ax.plot(steps, [r["val_loss"] for _, r in data], "o-", color="tab:blue",
                 label="val_loss")
    loss_ax.plot(steps, [r["val_empty_map_loss"] for _, r in data], "--", color="tab:gray",
                 label="empty-map loss (learnt nothing)")
    loss_ax.set_xlabel("training steps")
    loss_ax.set_ylabel("loss on held-out frames")
    add_ax = loss_ax.twinx()
    add_ax.plot(steps, [100 * (r.get("val_add_01d") or 0.0) for _, r in data], "s-",
                color="tab:red", label="ADD < 0.1 d (%)")
    add_ax.plot(steps, [100 * (r.get("val_detection_rate") or 0.0) for _, r in data], "^:",
                color="tab:orange", label="detected (%)")
    add_ax.set_ylabel("% of held-out objects")
    add_ax.set_ylim(0, 100)
    lines = loss_ax.get_legend_handles_labels()
    more = add_ax.get_legend_handles_labels()
    loss_ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", fontsize=8)
    loss_ax.set_title(title or path, fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("metrics")
    p.add_argument("--out", default="learning.png")
    p.add_argument("--title", default=None)
    args = p.parse_args()
    print("wrote %s" % plot(args.metrics, args.out, args.title))


if __name__ == "__main__":
    main()
