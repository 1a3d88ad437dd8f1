"""The README's workflows through the launcher and the images, each command on the real
output of the one before (the in-process twins are in test_journeys.py), and the first run a
user makes: `docker compose run --rm train-dope` with no arguments, on a CPU."""
import json
import os
import subprocess
import sys
import time

import pytest

from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = images.REPO
SMALL = ["--width", "160", "--height", "120", "--distance", "0.25,0.4"]


def pose_train(*args, timeout=900):
    result = subprocess.run([sys.executable, "-m", "pose_train"] + [str(a) for a in args],
                            capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def test_dope_chain_through_the_launcher_and_both_images(modern_image, legacy_image, tmp_path):
    data, held, run = tmp_path / "data", tmp_path / "heldout", tmp_path / "run"
    pose_train("synth", "dope", "--out", data, "--n", "20", "--seed", "1", *SMALL)
    pose_train("synth", "dope", "--out", held, "--n", "3", "--seed", "2", *SMALL)
    pose_train("train", "dope", "--data", data, "--object", "cube", "--outf", run, "--epochs",
               "1", "--imagesize", "64", "--batchsize", "4", "--workers", "0",
               "--pretrained", "none")
    best = run / "net_best.pth"
    pose_train("validate", "dope", "--data", data, "--object", "cube", "--outf",
               tmp_path / "check", "--imagesize", "64")
    pose_train("infer", "dope", best, "--images", held, "--outf", tmp_path / "infer")
    pose_train("eval", "dope", best, "--data", held, "--object", "cube", "--outf",
               tmp_path / "eval")
    assert json.load(open(tmp_path / "eval" / "results.json"))["summary"]["objects"] == 3
    pose_train("export", "onnx", best, "--height", "64", "--width", "64", "--out",
               tmp_path / "dope.onnx")
    converted = pose_train("convert", best, "--to", "melodic", "--verify")
    assert "torch 1.4" in converted.stdout
    melodic = run / "net_best_melodic.pth"
    pose_train("infer", "dope", melodic, "--images", held, "--outf", tmp_path / "robot",
               "--runtime", "melodic")
    modern, robot = (json.load(open(tmp_path / side / "detections.json"))
                     for side in ("infer", "robot"))
    assert modern["runtime"]["python"].startswith("3.")
    assert robot["runtime"]["python"].startswith("2.7") and robot["runtime"]["torch"] == "1.4.0"
    assert robot["settings"] == modern["settings"] and robot["normalization"] == "ros"
    assert [f["name"] for f in robot["frames"]] == ["000000", "000001", "000002"]
    owned = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert owned and all(p.stat().st_uid == os.getuid() for p in owned)


def test_compose_first_run_on_a_cpu_ends_with_the_validation_figures(modern_image, tmp_path):
    """The README's first command, unchanged: on a machine without a GPU it sizes itself to
    end within 10 minutes on 2 cores and says where the best weights are."""
    out = tmp_path / "output"
    out.mkdir()
    env = dict(os.environ, POSE_TRAIN_OUTPUT=str(out), POSE_TRAIN_DATA=str(tmp_path),
               POSE_TRAIN_MODERN_IMAGE=modern_image)
    started = time.time()
    try:
        result = subprocess.run(["docker", "compose", "run", "--rm", "train-dope"], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=1200)
    finally:
        subprocess.run(["docker", "compose", "down", "--remove-orphans"], cwd=REPO, env=env,
                       capture_output=True)
    minutes = (time.time() - started) / 60.0
    print("compose first run: %.1f minutes" % minutes)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert "no --data and no GPU: a first run sized for a CPU" in text
    assert "--epochs 30 --imagesize 400 --batchsize 32" in text      # how to get the recipe
    assert "best on the 20 held-out frames" in text and "/out/net_best.pth" in text
    assert "what it finds in 4 held-out frames" in text and len(os.listdir(out / "heldout")) == 4
    epochs = [json.loads(line) for line in open(out / "metrics.jsonl")]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, 11))
    assert all("val_add_01d" in r for r in epochs)
    assert (out / "net_best.pth").exists() and (out / "net_best.json").exists()
