# -*- coding: utf-8 -*-
"""DOPE inference per frame: the network, then our post-processing vs the node's, side by side.

  python benchmarks/bench_dope_post.py                     # this runtime
  python benchmarks/bench_dope_post.py --python2 PATH      # + the Melodic runtime (py2.7 +
                                                           #   torch 1.4), same maps and weights

Frames: synthetic 640x480 scenes with one or two cuboids; the maps decoded are those a perfect
network gives for them (a trained network's peaks, without training one), at the node's
default scale (downscale_height 500, so 640x480 goes in whole) and its sigma 3. "node" is
benchmarks/dope_node_post.py, the node's loops re-implemented; both give the same points
(tests/test_dope_infer.py), and PnP is run on both outputs. The network time is DopeNetwork's
forward pass on a 640x480 frame (random weights: the time does not depend on them).
Runs in Python 2.7 and 3; the maps are made in Python 3 and handed over as .npz.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from pose_train_py27 import dope_decode  # noqa: E402
import dope_node_post  # noqa: E402

SETTINGS = dict(dope_decode.NODE_SETTINGS, downscale_height=500)
DIMS_CM = [10.0, 8.0, 6.0]


# (name, Gaussian noise added to every map, peak smoothing sigma): the node's sigma 3, and
# the 0.96 that weights trained on 128 px crops decode with (more small peaks survive it).
CONDITIONS = (("clean", 0.005, 3.0), ("cluttered", 0.03, 3.0), ("cluttered", 0.03, 0.96))


def make_maps(path, n, noise):
    """Python 3 only: n frames' ideal maps (+ a second object on odd frames) plus noise of
    ``noise`` std (an undertrained network's clutter: many small peaks) into an .npz."""
    from pose_train.dope.synth import write_dataset
    from pose_train.dope.targets import ideal_maps
    folder = tempfile.mkdtemp(prefix="bench-post-")
    write_dataset(folder, n, seed=11, width=640, height=480, progress=False)
    arrays, cams = {}, []
    rng = np.random.default_rng(0)
    for i in range(n):
        ann = json.load(open(os.path.join(folder, "%06d.json" % i)))
        pts = np.array([o["projected_cuboid"] for o in ann["objects"] if o["class"] == "cube"])
        b, a = ideal_maps(pts, (640, 480))
        if i % 2:
            b, a = np.maximum(b, np.roll(b, 9, axis=2)), a + np.roll(a, 9, axis=2)
        arrays["b%d" % i] = b + rng.normal(0, noise, b.shape).astype(np.float32)
        arrays["a%d" % i] = a + rng.normal(0, noise, a.shape).astype(np.float32)
        cams.append(ann["camera_data"]["intrinsics"])
    np.savez(path, **arrays)
    with open(path + ".json", "w") as f:
        json.dump(cams, f)


def _time(fn, repeat):
    fn()   # warm-up
    start = time.time()
    for _ in range(repeat):
        fn()
    return 1000.0 * (time.time() - start) / repeat


def _node_detect(b, a, K):
    with np.errstate(invalid="ignore", divide="ignore"):
        objects = dope_node_post.find_objects(b, a, SETTINGS)
    for obj in objects:
        points = [None if c is None else (c[0] * 8, c[1] * 8) for c in obj["corners"]]
        points.append((obj["centroid"][0] * 8, obj["centroid"][1] * 8))
        dope_decode.solve_pnp(points, DIMS_CM, K)


def measure(path, repeat, network, sigma):
    SETTINGS["sigma"] = sigma
    maps = np.load(path)
    cams = json.load(open(path + ".json"))
    frames = [(maps["b%d" % i], maps["a%d" % i],
               np.array([[c["fx"], 0, c["cx"]], [0, c["fy"], c["cy"]], [0, 0, 1.0]]))
              for i, c in enumerate(cams)]
    ours = _time(lambda: [dope_decode.detect(b, a, K, DIMS_CM, SETTINGS) for b, a, K in frames],
                 repeat) / len(frames)
    node = _time(lambda: [_node_detect(b, a, K) for b, a, K in frames], repeat) / len(frames)
    found = sum(len(dope_decode.detect(b, a, K, DIMS_CM, SETTINGS)) for b, a, K in frames)
    peaks = sum(len(p) for b, _, _ in frames for p in dope_decode.find_peaks(
        b, SETTINGS["sigma"], SETTINGS["thresh_map"]))
    import torch
    result = {"python": platform.python_version(), "torch": torch.__version__,
              "post_ours_ms": ours, "post_node_ms": node, "frames": len(frames),
              "detections": found, "peaks": peaks, "network_ms": None, "sigma": sigma}
    if network:
        from pose_train_py27.nets import DopeNetwork
        torch.manual_seed(0)
        torch.set_num_threads(max(1, torch.get_num_threads()))
        net = DopeNetwork().eval()
        x = torch.zeros(1, 3, 480, 640)
        with torch.no_grad():
            result["network_ms"] = _time(lambda: net(x), 2)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--python2", default=None, help="a python2.7 with torch 1.4 (the legacy lock)")
    p.add_argument("--no-network", dest="network", action="store_false")
    p.add_argument("--maps", default=None, help=argparse.SUPPRESS)   # the py2.7 half
    p.add_argument("--sigma", type=float, default=3.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.maps:
        print(json.dumps(measure(args.maps, args.repeat, args.network, args.sigma)))
        return
    folder = tempfile.mkdtemp(prefix="bench-post-")
    rows = []
    for i, (name, noise, sigma) in enumerate(CONDITIONS):
        path = os.path.join(folder, "%s-%d.npz" % (name, i))
        make_maps(path, args.frames, noise)
        network = args.network and i == 0   # once per runtime: it does not see the maps
        rows.append((name, measure(path, args.repeat, network, sigma)))
        if args.python2:
            cmd = [args.python2, os.path.abspath(__file__), "--maps", path, "--repeat",
                   str(args.repeat), "--sigma", str(sigma)] + ([] if network else ["--no-network"])
            env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
            out = subprocess.check_output(cmd, env=env).decode().splitlines()[-1]
            rows.append((name, json.loads(out)))
    print("DOPE per 640x480 frame, CPU (%d cores), %d frames per condition"
          % (os.cpu_count(), args.frames))
    print("%-10s %5s %-26s %6s %6s %11s %13s %13s %9s" % (
        "maps", "sigma", "runtime", "peaks", "found", "network ms", "post ours ms",
        "post node ms", "speed-up"))
    for name, r in rows:
        net = "-" if r["network_ms"] is None else "%.0f" % r["network_ms"]
        print("%-10s %5.2f %-26s %6d %6d %11s %13.2f %13.2f %8.1fx" % (
            name, r["sigma"], "py %s torch %s" % (r["python"], r["torch"]), r["peaks"],
            r["detections"], net,
            r["post_ours_ms"], r["post_node_ms"], r["post_node_ms"] / r["post_ours_ms"]))


if __name__ == "__main__":
    main()
