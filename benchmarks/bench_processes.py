"""Training img/s of train dope with 1 process and with several on one machine, side by side.

  python benchmarks/bench_processes.py --processes 1,2 --frames 64 --size 128 --batch 4
  python benchmarks/bench_processes.py --processes 1,8 --frames 2048 --size 400 --batch 32   # 8 GPUs

Each run is `train dope` on one synthetic set (--gpus P: P processes, NCCL on GPUs, gloo on the
CPU; the same code path torchrun's several-node runs take within a node), one epoch plus a
second one measured (the first decodes the frames and warms up), validation off. Printed: the
measured epoch's img/s over all processes, and the speed-up over one process. The several-node
figure needs several machines: not measured by this script.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO]

from pose_train.dope.synth import write_dataset  # noqa: E402


def epoch_rate(outf):
    records = [json.loads(line) for line in open(os.path.join(outf, "metrics.jsonl"))]
    epochs = [r for r in records if r["kind"] == "epoch"]
    return epochs[-1]["img_per_s"], epochs[-1]["world_size"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-processes-")
    data = os.path.join(root, "data")
    write_dataset(data, args.frames, seed=1, width=320, height=240, progress=False,
                  distance=(0.25, 0.4))
    rows = []
    for count in (int(v) for v in args.processes.split(",")):
        outf = os.path.join(root, "p%d" % count)
        subprocess.run([sys.executable, "-m", "pose_train", "--local", "train", "dope", "--data",
                        data, "--object", "cube", "--outf", outf, "--epochs", "2", "--batchsize",
                        str(args.batch), "--imagesize", str(args.size), "--gpus", str(count),
                        "--val", "off", "--pretrained", "none"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        rows.append((count,) + epoch_rate(outf))
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (gloo)"
    print("machine: %s, %d cores, %s; %s, torch %s" % (platform.machine(), os.cpu_count(),
                                                    platform.platform(), device, torch.__version__))
    print("%d frames, %d px crops, batch %d per process, second epoch" % (args.frames, args.size,
                                                                         args.batch))
    print("| processes | img/s (all) | speed-up |")
    print("|---:|---:|---:|")
    for count, rate, world in rows:
        print("| %d | %.1f | %.2fx |" % (world, rate, rate / rows[0][1]))


if __name__ == "__main__":
    main()
