#!/usr/bin/env bash
# The GPU measurements issues 3 and 5 ask for, cut to fit a lent machine's 10-minute calls
# (torch, cv2, numpy, yaml and tqdm are all the scripts need; no image, no fire):
#
#   bash benchmarks/gpu_session.sh speed        # ~8 min: DOPE + keypoint img/s vs the original recipes
#   bash benchmarks/gpu_session.sh learn-dope   # ~9 min: synth -> train dope --recipe fast and dope side by side -> eval dope on held-out frames
#   bash benchmarks/gpu_session.sh learn-kp     # ~9 min: PCK / 2D projection / ADD after training
#   bash benchmarks/gpu_session.sh multi        # ~3 min: infer dope per frame with 1, 2 and 4 networks
#   bash benchmarks/gpu_session.sh procs        # ~4 min: train dope img/s, 1 process vs one per GPU
#
# Logs and JSON go to $OUT (the lent machine's return folder) or benchmarks/out.
# A step that runs past its share is cut by `timeout` and the next step still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...: run, tee the log, report the exit status, never abort
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/gpu.csv" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee "$out/torch.txt"

case "${1:-}" in
    speed)
        step bench_dope 270 python3 benchmarks/bench_dope.py --compile --json "$out/bench_dope.json"
        step bench_keypoints 210 python3 benchmarks/bench_keypoints.py --compile ;;
    learn-dope)
        # both recipes at once on the one GPU, from a random trunk (no ImageNet file can be
        # fetched there; with one in torch's hub cache add --pretrained imagenet)
        step learn_dope 540 python3 benchmarks/learn_dope.py --recipe fast,dope --minutes 6 \
            --steps fast=1500,dope=600 --train 1500 --heldout 48 --size 400 --frame 640x480 \
            --distance 0.35,0.6 --batch 32 --workers 4 --outf "$out/learn_dope" ;;
    learn-kp)
        step learn_keypoints 540 python3 benchmarks/learn_keypoints.py --minutes 6 \
            --json "$out/learn_keypoints.json" ;;
    multi)
        step bench_dope_multi 240 python3 benchmarks/bench_dope_multi.py --frames 16 \
            --size 1280x720 ;;
    procs)
        gpus=$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")
        step bench_processes 300 python3 benchmarks/bench_processes.py --processes "1,$gpus" \
            --frames 1024 --size 400 --batch 32 ;;
    *)
        echo "usage: $0 speed|learn-dope|learn-kp|multi|procs" >&2
        exit 2 ;;
esac
