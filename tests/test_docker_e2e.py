"""End to end against a real Docker engine: images, launcher, compose, Ctrl-C, legacy runtime."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = images.REPO
REQUIRED_LABELS = ["org.opencontainers.image.version", "org.opencontainers.image.created",
                   "org.opencontainers.image.revision", "org.opencontainers.image.base.name",
                   "org.opencontainers.image.base.digest", "io.pose-train.torch.version",
                   "io.pose-train.cuda.version", "io.pose-train.cuda.archs"]


def _launcher(*args, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "pose_train"] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env), cwd=REPO)


def test_images_are_labelled(docker_client, modern_image, legacy_image):
    modern = docker_client.images.get(modern_image).labels
    legacy = docker_client.images.get(legacy_image).labels
    for key in REQUIRED_LABELS[:-2]:
        assert modern[key] and legacy[key], key
    assert modern["io.pose-train.torch.version"] == "2.13.0+cpu"
    assert legacy["io.pose-train.torch.version"] == "1.4.0"
    assert legacy["io.pose-train.cuda.archs"] == "3.5 5.0 6.0 7.0 7.5"
    assert modern["org.opencontainers.image.base.name"] == os.environ["POSE_TRAIN_MODERN_BASE"]


def test_legacy_runtime_is_python27_torch14(docker_client, legacy_image):
    out = docker_client.containers.run(
        legacy_image, ["-c", "from __future__ import print_function; import sys, torch, numpy; from pose_train_py27.nets import DopeNetwork;"
                             "b, a = DopeNetwork()(torch.zeros(1, 3, 64, 64));"
                             "print(sys.version_info[:2], torch.__version__, numpy.__version__, b[-1].shape[1], a[-1].shape[1])"],
        entrypoint=["python2.7"], remove=True).decode()
    assert out.split() == ["(2,", "7)", "1.4.0", "1.16.6", "9", "16"]


def test_missing_image_offers_build(modern_image, tmp_path):
    result = _launcher("synth", "dope", "--out", str(tmp_path), POSE_TRAIN_MODERN_IMAGE="pose-train/absent:0")
    assert result.returncode != 0
    assert "pose-train images build modern" in result.stderr.strip().splitlines()[-1]


def test_launcher_runs_job_with_logs_manifest_and_owner(modern_image, tmp_path):
    out = tmp_path / "synth"
    result = _launcher("synth", "dope", "--out", str(out), "--n", "3", "--width", "96", "--height", "64")
    assert result.returncode == 0, result.stderr
    jsons = [p for p in out.rglob("*.json") if "logs" not in p.parts]
    assert len([p for p in out.rglob("*.png")]) >= 3 and jsons
    assert all(p.stat().st_uid == os.getuid() for p in out.rglob("*") if "logs" not in p.parts)
    logs = sorted((out / "logs").iterdir())
    assert [p.suffix for p in logs] == [".json", ".log"]
    import json
    manifest = json.loads(logs[0].read_text())
    assert manifest["exit_code"] == 0 and manifest["image"]["id"].startswith("sha256:")
    assert "synth dope" in manifest["host_command"] and manifest["pose_train_version"]


def test_exit_code_propagates(modern_image, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _launcher("train", "dope", "--data", str(empty), "--outf", str(tmp_path / "o"), "--epochs", "1")
    assert result.returncode == 2, result.stdout + result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_saves_the_job_and_exits_with_its_code(docker_client, modern_image, tmp_path, signum,
                                                      terminal_signals):
    """Ctrl-C, a SIGTERM (a scheduler's stop) or a SIGHUP (terminal closed) mid-training: the job
    is asked to stop, saves its state, its "continue with:" lines reach the terminal and the
    log, the exit code is the job's 0, and the container is removed."""
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "train", "dope", "--outf", str(tmp_path),
                             "--epochs", "1000", "--imagesize", "64", "--batchsize", "2", "--synth_n", "4"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=terminal_signals)
    label = {"label": "io.pose-train.job=train-dope"}
    deadline = time.time() + 300
    # Inside the training loop for sure (its stop handler installed) once an epoch is saved.
    while not (tmp_path / "net_epoch_01.pth").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.5)
    assert docker_client.containers.list(filters=label), "the container is not running"
    proc.send_signal(signum)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out
    assert "state saved in" in out and "continue with: pose-train train dope" in out, out
    assert (tmp_path / "training_state.pt").exists()
    log = [p for p in (tmp_path / "logs").iterdir() if p.suffix == ".log"]
    assert "continue with:" in log[0].read_text()
    assert docker_client.containers.list(all=True, filters=label) == []


def test_a_job_slower_than_the_stop_wait_is_killed_with_the_loss_said(docker_client, modern_image,
                                                                      tmp_path, terminal_signals):
    """The wait is bounded: a step longer than --stop-wait ends in a kill, exit 130, and the
    launcher says what is lost (a second Ctrl-C takes the same path at once)."""
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "--stop-wait", "1", "train", "dope",
                             "--outf", str(tmp_path), "--epochs", "1", "--imagesize", "320",
                             "--batchsize", "8", "--synth_n", "16", "--workers", "0",
                             "--val", "off", "--recipe", "dope"],   # the slowest step there is
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=terminal_signals)
    label = {"label": "io.pose-train.job=train-dope"}
    lines = []
    for raw in proc.stdout:   # "training 'cube': ..." comes just before the loop starts
        lines.append(raw.decode(errors="replace"))
        if lines[-1].startswith("training "):
            break
    # Steps start about a second after that line and last ~13 s each on CI's CPU (0.6 img/s):
    # two of them, so 5 s is well inside a step (20 s once outlasted a one-step epoch).
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    out = "".join(lines) + proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, out
    assert "did not stop within 1 s" in out and "since its last saved checkpoint is lost" in out
    assert docker_client.containers.list(all=True, filters=label) == []


def test_compose_train_dope_cpu_writes_checkpoint_owned_by_user(modern_image, tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    os.chown(out, 4321, 4321)  # the "invoking user" owns ./output; compose runs as root
    env = dict(os.environ, POSE_TRAIN_OUTPUT=str(out), POSE_TRAIN_DATA=str(tmp_path),
               POSE_TRAIN_MODERN_IMAGE=modern_image)
    cmd = ["docker", "compose", "run", "--rm", "train-dope", "--epochs", "1", "--imagesize", "64",
           "--batchsize", "2", "--synth_n", "4"]
    try:
        result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:  # a timed-out `compose run` leaves its container behind
        subprocess.run(["docker", "compose", "down", "--remove-orphans"], cwd=REPO, env=env, capture_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no CUDA device in this container: training on the CPU" in result.stderr
    ckpt = out / "net_epoch_01.pth"
    assert ckpt.stat().st_uid == 4321 and ckpt.stat().st_gid == 4321
    import torch
    from pose_train_py27.nets import DopeNetwork
    torch.nn.DataParallel(DopeNetwork()).load_state_dict(torch.load(ckpt, map_location="cpu"))


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)       # the wheelhouse is ~260 MB: no second copy when one disk holds both
    except OSError:
        shutil.copy2(src, dst)


def test_compose_build_is_offline_and_labelled(docker_client, modern_image, tmp_path):
    """`docker compose build` (what the README's first command does on a fresh machine) from a
    filled wheelhouse, with the build's network off: the CPU variant builds, carries the same
    torch/CUDA labels `pose-train images build` gives, and runs."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "output", "data", "tests", "benchmarks", ".wheelhouse", "__pycache__", ".pytest_cache"))
    shutil.copytree(images.wheelhouse_dir("modern-cpu"), src / ".wheelhouse" / "modern-cpu",
                    copy_function=_link_or_copy)
    (src / "offline.yaml").write_text("services:\n  train-dope:\n    build:\n      network: none\n")
    tag = "pose-train/modern:compose-build-check"
    env = dict(os.environ, POSE_TRAIN_MODERN_IMAGE=tag, POSE_TRAIN_VARIANT="cpu")
    compose = ["docker", "compose", "-f", "compose.yaml", "-f", "offline.yaml"]
    try:
        built = subprocess.run(compose + ["build", "train-dope"], cwd=src, env=env, capture_output=True,
                               text=True, timeout=1200)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        labels = docker_client.images.get(tag).labels
        reference = docker_client.images.get(modern_image).labels
        for key in ("io.pose-train.variant", "io.pose-train.torch.version", "io.pose-train.cuda.version",
                    "io.pose-train.cuda.archs", "io.pose-train.runtime"):
            assert labels[key] == reference[key], key
        assert labels["org.opencontainers.image.base.name"] == os.environ["POSE_TRAIN_MODERN_BASE"]
        out = docker_client.containers.run(tag, ["-c", "import torch, pose_train; print(torch.__version__)"],
                                           entrypoint=["python"], remove=True).decode()
        assert out.strip() == "2.13.0+cpu"
    finally:
        subprocess.run(compose + ["down", "--remove-orphans"], cwd=src, env=env, capture_output=True)
        if docker_client.images.list(name=tag):
            docker_client.images.remove(tag, force=True)


def test_keypoint_pipeline_through_launcher_and_to_melodic(modern_image, legacy_image, tmp_path):
    """synth -> prepare -> train -> eval in the modern image, then the weights verified in the legacy one."""
    steps = [
        ["synth", "linemod", "--out", str(tmp_path / "lm"), "--n", "8", "--width", "160", "--height", "120"],
        ["prepare", "keypoints", "--seq", "01", "--kptype", "fps", "--kpnum", "8", "--data", str(tmp_path / "lm"),
         "--outf", str(tmp_path / "kp")],
        ["train", "keypoints", "--seq", "1", "--kptype", "fps", "--data", str(tmp_path / "kp"), "--outf",
         str(tmp_path / "run"), "--epochs", "1", "--trainBatch", "2", "--arch", "resnet50",
         "--inputResH", "64", "--inputResW", "64"],
        ["eval", "keypoints", str(tmp_path / "run" / "best.pkl"), "--seq", "1", "--kptype", "fps",
         "--data", str(tmp_path / "kp"), "--outf", str(tmp_path / "eval")],
        ["convert", str(tmp_path / "run" / "best.pkl"), "--to", "melodic", "--model", "keypoints", "--verify"],
    ]
    for step in steps:
        result = _launcher(*step)
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-2000:])
    assert (tmp_path / "eval" / "results.md").read_text().count("| 01 | fps | 8 |") == 1
    assert (tmp_path / "run" / "best_melodic.pth").exists()


def test_doctor_finds_and_stops_what_a_killed_launcher_left(docker_client, modern_image, tmp_path):
    """After a SIGKILL of the launcher its container trains on; doctor names it by its labels
    and --stop_orphans stops and removes it; the next launch warns about it."""
    import socket
    from pose_train.launcher import orphans
    gone = subprocess.Popen(["true"])
    gone.wait()   # a launcher PID that no longer exists
    c = docker_client.containers.run(modern_image, ["300"], entrypoint=["sleep"], detach=True,
                                     name="pose-train-orphan-check", labels={
                                         orphans.RUN_LABEL: "orphan-check",
                                         orphans.PID_LABEL: str(gone.pid),
                                         orphans.HOST_LABEL: socket.gethostname(),
                                         "io.pose-train.job": "train-dope"})
    try:
        report = _launcher("doctor")
        assert "pose-train-orphan-check (job train-dope" in report.stdout, report.stdout
        assert "--stop_orphans" in report.stdout and report.returncode == 1
        launch = _launcher("synth", "dope", "--out", str(tmp_path / "d"), "--n", "1", "--width",
                           "64", "--height", "48")
        assert launch.returncode == 0 and "warning: pose-train-orphan-check" in launch.stderr
        stopped = _launcher("doctor", "--stop_orphans")
        assert "stopped and removed pose-train-orphan-check" in stopped.stdout, stopped.stdout
        assert docker_client.containers.list(all=True, filters={"name": "pose-train-orphan-check"}) == []
    finally:
        import docker.errors
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass   # the test removed it


def test_progress_reaches_the_terminal_before_the_first_epoch_ends(modern_image, tmp_path):
    """No TTY between container and launcher: a plain progress line, not a buffered bar."""
    result = _launcher("train", "dope", "--outf", str(tmp_path), "--epochs", "1", "--imagesize",
                       "64", "--batchsize", "2", "--synth_n", "6", "--workers", "0", "--val", "off")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    first = text.index("epoch 1: step 1/3, loss ")
    assert "img/s, epoch ETA " in text[first:first + 200]
    assert first < text.index("epoch 1: loss ")   # the end-of-epoch line comes after it


def test_ctrl_c_during_infer_promises_nothing_and_exits_130(docker_client, modern_image, tmp_path,
                                                          terminal_signals):
    """infer keeps no state: Ctrl-C says what stops (not 'save and stop'), the exit code is the
    interrupt's 130 (it was the job's 143), and the container is removed."""
    frames = tmp_path / "frames"
    made = _launcher("synth", "dope", "--out", str(frames), "--n", "60", "--width", "320", "--height", "240")
    assert made.returncode == 0, made.stderr
    (tmp_path / "w").mkdir()
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import infer_helpers
    weights = infer_helpers.write_weights(tmp_path / "w")
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "infer", "dope", weights, "--images", str(frames),
                             "--outf", str(tmp_path / "out")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=terminal_signals)
    label = {"label": "io.pose-train.job=infer-dope"}
    deadline = time.time() + 300
    while not list((tmp_path / "out").glob("*.json")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, out
    assert "SIGINT: stopping pose-train-infer-dope-" in out and "the files it finished stay" in out
    assert "save and stop" not in out
    assert docker_client.containers.list(all=True, filters=label) == []
    # The frames it finished are recorded, and the job said so (it used to vanish silently).
    record = json.load(open(str(tmp_path / "out" / "detections.json")))
    assert record["stopped_by"] == "SIGTERM" and 1 <= len(record["frames"]) < 60
    assert "infer dope: stopped by SIGTERM" in out
