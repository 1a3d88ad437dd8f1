"""Time `pose-train convert` on a full-size DOPE checkpoint (50,267,350 parameters), CPU only.

    python benchmarks/bench_convert.py [--repeat 3] [--threads N] [--dir DIR]

Measures the whole conversion as the job runs it (load with weights_only, find the state
dict, cast/contiguous, key check against the network, write, re-scan the output), for
--to melodic and --to modern, and torch.save(_use_new_zipfile_serialization=False) of the
same tensors as a floor. Target (issue 4): --to melodic < 2 s.

Measured 2026-11-22, shared 2-core x86_64 dev VM (load average ~3), torch 2.13.0+cpu, source
in the page cache: --to melodic best 0.28-0.59 s, median 0.37-0.66 s over two runs;
--to modern pth 0.52-0.91 s (includes the weights_only read-back), safetensors 0.15-0.38 s.
The legacy verifier on the result (Python 2.7.18 + torch 1.4.0, full DOPE, 1x3x64x64): 1.4 s.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from pose_train.compat.convert import convert  # noqa: E402
from pose_train_py27.nets import DopeNetwork  # noqa: E402


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    state = DopeNetwork().state_dict()
    params = sum(t.numel() for t in state.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = os.path.join(tmp, "net_epoch_60.pth")
        torch.save(state, src)  # what the Kaggle trainer writes: zipfile, bare keys
        out = os.path.join(tmp, "out.pth")
        rows = [
            ("convert --to melodic", lambda: convert(src, "melodic", out)),
            ("convert --to modern (pth)", lambda: convert(src, "modern", out + ".pth")),
            ("convert --to modern (safetensors)",
             lambda: convert(src, "modern", out + ".safetensors", fmt="safetensors")),
            ("torch.save legacy (floor)",
             lambda: torch.save(state, out + ".floor", _use_new_zipfile_serialization=False)),
        ]
        print("DOPE checkpoint: %s parameters, %.1f MB; torch %s, %d threads, %s, %s"
              % (format(params, ","), os.path.getsize(src) / 1e6, torch.__version__,
                 torch.get_num_threads(), platform.processor() or platform.machine(),
                 platform.node()))
        for name, fn in rows:
            best, median = timed(fn, args.repeat)
            print("%-36s best %.3f s  median %.3f s" % (name, best, median))
    return 0


if __name__ == "__main__":
    sys.exit(main())
