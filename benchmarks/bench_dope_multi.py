"""Several objects per frame: infer dope with 1, 2 and 4 networks, against one run per network.

  python benchmarks/bench_dope_multi.py --frames 4 --size 640x480

One run with N networks (one per object, as DOPE's node runs them) reads and decodes each frame
once and runs every network on it; N separate runs read every frame N times and load the frames'
cameras N times. Printed per frame: read (decode) ms, network ms summed over the networks,
post-processing ms summed, and the whole run's wall time per frame, side by side with N separate
one-network runs. Random weights (the time does not depend on them), synthetic frames.
"""
import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from pose_train.dope.synth import OBJECT_SIZE, write_dataset  # noqa: E402
from pose_train.dope.weights_files import save_epoch_weights  # noqa: E402
from pose_train.jobs import namespace  # noqa: E402
from pose_train_py27 import dope_infer  # noqa: E402
from pose_train_py27.nets import DopeNetwork  # noqa: E402
from pose_train_py27.sidecar import dope_meta  # noqa: E402

NAMES = ("cube", "mug", "can", "box")


def weights_files(root, count, frame):
    paths = []
    for k in range(count):
        torch.manual_seed(k)
        meta = dope_meta(NAMES[k], 400, "ros", 0.5, [100 * v for v in OBJECT_SIZE], frame)
        os.makedirs(os.path.join(root, NAMES[k]))
        paths.append(save_epoch_weights(os.path.join(root, NAMES[k]), DopeNetwork(), 1, meta))
    return paths


def infer(weights, frames, outf):
    """(wall seconds, the run's record) of one infer dope run in this process."""
    args = namespace("infer-dope", weights=list(weights), images=[frames], outf=outf,
                     downscale_height=10000)   # the frame goes in whole, as sized
    start = time.time()
    record = dope_infer.run(args)
    return time.time() - start, record


def row(label, frames, wall, records):
    per = [f for r in records for f in r["frames"]]
    n = len(per) // max(1, len(records)) if records else 0

    def total(key):
        return sum(f[key] for f in per) / max(1, n)
    return "| %s | %.1f | %.0f | %.2f | %.0f |" % (label, total("read_ms"), total("network_ms"),
                                                     total("post_ms"), 1000.0 * wall / frames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--networks", default="1,2,4")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(v) for v in args.networks.split(",")]
    root = tempfile.mkdtemp(prefix="bench-multi-")
    frames = write_dataset(os.path.join(root, "frames"), args.frames, seed=5, width=width,
                           height=height, progress=False)
    weights = weights_files(os.path.join(root, "weights"), max(counts), [width, height])
    torch.set_num_threads(os.cpu_count() or 1)
    print("infer dope, %d frames of %dx%d, %s, %s, torch %s, %d threads" % (
        args.frames, width, height, platform.processor() or platform.machine(),
        "cuda" if torch.cuda.is_available() else "cpu", torch.__version__, torch.get_num_threads()))
    print("\n| networks | read ms/frame | network ms/frame | post ms/frame | wall ms/frame |")
    print("|---|---:|---:|---:|---:|")
    infer(weights[:1], frames, os.path.join(root, "warm"))   # first-call costs out of the table
    for count in counts:
        wall, record = infer(weights[:count], frames, os.path.join(root, "one-%d" % count))
        print(row("%d in one run" % count, args.frames, wall, [record]))
        if count > 1:
            runs = [infer([w], frames, os.path.join(root, "sep-%d-%d" % (count, k)))
                    for k, w in enumerate(weights[:count])]
            print(row("%d separate runs" % count, args.frames, sum(r[0] for r in runs),
                      [r[1] for r in runs]))
    print("\nread: the frame's decode (once per run); wall: the whole run (network loading "
          "included) over the frames.")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
