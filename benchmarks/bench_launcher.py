#!/usr/bin/env python3
"""Launcher overheads, side by side in one run:

  1. `pose-train --help` wall time (target < 0.3 s) vs bare `python -c pass`;
  2. launcher-to-container-start: `pose-train inspect` through the launcher vs the
     same container started with plain `docker run`, vs the job run in-process (--local).

Needs a Docker engine and the modern image (pose-train images build modern).
Usage: python benchmarks/bench_launcher.py [--repeat 5]
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def small_checkpoint(folder):
    path = os.path.join(folder, "tiny.pth")
    code = "import torch; torch.save({'w': torch.zeros(3)}, %r)" % path
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from pose_train.launcher.docker_images import image_tag
    cli = [sys.executable, "-m", "pose_train"]
    folder = tempfile.mkdtemp()
    ckpt = small_checkpoint(folder)
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("pose-train --help", cli + ["--help"]),
        ("pose-train --local inspect (no Docker)", cli + ["--local", "inspect", ckpt]),
        ("docker run <modern> inspect (plain CLI)",
         ["docker", "run", "--rm", "-v", "%s:%s:ro" % (folder, folder), image_tag("modern"), "inspect", ckpt]),
        ("pose-train inspect (launcher + container)", cli + ["inspect", ckpt]),
    ]
    print("machine: %s, %d cores, Python %s" % (platform.platform(), os.cpu_count(), platform.python_version()))
    print("%-44s %10s %10s" % ("command", "median s", "best s"))
    for name, cmd in rows:
        median, best = timed(cmd, args.repeat)
        print("%-44s %10.3f %10.3f" % (name, median, best))


if __name__ == "__main__":
    main()
