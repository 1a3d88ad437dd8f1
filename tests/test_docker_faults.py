"""Bad input and signals through the launcher and the image (the --local paths have their own
tests): what the user sees names the host's paths, a refused job leaves nothing behind, and a
closed terminal stops a job with what it finished said."""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = images.REPO
CARTON = os.path.join(REPO, "pose_train", "dope", "assets", "carton", "carton.obj")


def _launcher(*args, timeout=600, **env):
    """(exit code, what the terminal showed: the launcher's lines and the job's, one stream)."""
    done = subprocess.run([sys.executable, "-m", "pose_train"] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ, **env))
    return done.returncode, done.stdout


@pytest.fixture
def flat_mesh(tmp_path):
    """A Wavefront OBJ whose only triangle has no area (three points on a line)."""
    path = tmp_path / "flat.obj"
    path.write_text("v 0 0 0\nv 0.2 0 0\nv 0.4 0 0\nf 1 2 3\n")
    return path


def test_a_refused_job_leaves_no_folder_the_launcher_made(modern_image, flat_mesh, tmp_path):
    """The launcher makes --out for the container to write into, and its log of the job went
    there: a job refused in the image left that folder holding only the launcher's log."""
    out = tmp_path / "new"
    code, said = _launcher("synth", "dope", "--mesh", flat_mesh, "--n", 2, "--out", out)
    assert code == 2, said
    assert "%s: every triangle of the mesh has zero area" % flat_mesh in said and "/host/" not in said
    assert not out.exists()
    # A folder that was there keeps the log (the launcher logs every job it runs).
    kept = tmp_path / "kept"
    kept.mkdir()
    assert _launcher("synth", "dope", "--mesh", flat_mesh, "--n", 2, "--out", kept)[0] == 2
    assert [p.suffix for p in sorted((kept / "logs").iterdir())] == [".json", ".log"]


def test_a_closed_terminal_stops_a_launched_synth_with_the_frames_said(modern_image, tmp_path, terminal_signals):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "synth", "dope", "--mesh", CARTON,
                             "--out", str(out), "--n", "2000", "--width", "64", "--height", "48"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=terminal_signals)
    deadline = time.time() + 300
    while time.time() < deadline and len(glob.glob(str(out / "0*.json"))) < 2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGHUP)
    said = "".join(proc.communicate(timeout=120))
    assert proc.returncode == 129, said
    frames = len(glob.glob(str(out / "0*.json")))
    assert "stopped with %d of 2000 frames in %s" % (frames, out) in said, said
    assert frames == len(glob.glob(str(out / "0*.png")))


@pytest.fixture(scope="module")
def trained(modern_image, tmp_path_factory):
    """A one-epoch DOPE run through the launcher, at 64 px crops."""
    run = tmp_path_factory.mktemp("trained") / "run"
    code, said = _launcher("train", "dope", "--outf", run, "--epochs", 1, "--imagesize", 64, "--batchsize", 2,
                           "--synth_n", 4, "--val", "off")
    assert code == 0, said[-3000:]
    # The launcher says on the host why the CPU is used; the image's compose advice is not for
    # its users.
    assert "running on the CPU" in said and "COMPOSE_FILE" not in said, said[-3000:]
    return run


def test_a_launched_resume_at_another_crop_size_is_refused_in_host_paths(trained):
    """The image refuses it (validation losses at two crop sizes do not compare), naming the
    state by the path the user knows, with the way out."""
    code, said = _launcher("train", "dope", "--outf", trained, "--epochs", 2, "--imagesize", 96,
                           "--batchsize", 2, "--synth_n", 4, "--val", "off", "--resume", "auto")
    assert code == 2, said[-3000:]
    assert "%s was trained with --imagesize 64, not 96" % (trained / "training_state.pt") in said
    assert "continue it with --imagesize 64" in said and "/host/" not in said
    assert sorted(p.name for p in trained.glob("net_epoch_*.pth")) == ["net_epoch_01.pth"]


def test_an_export_stopped_by_sigterm_leaves_no_folder_it_made(trained, tmp_path):
    """SIGTERM while export writes its scratch graph: no scratch, no claim, no folder."""
    out = tmp_path / "deploy"
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "export", "onnx",
                             str(trained / "net_epoch_01.pth"), "--out", str(out / "model.onnx")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(str(out / ".model.onnx.*.tmp")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    said = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, said
    assert not out.exists(), sorted(os.listdir(out))


def test_convert_verify_without_the_legacy_image_is_not_a_success(trained, tmp_path):
    """The conversion runs in the modern image; the verifier's image is missing: exit 3 (as
    --verify without a legacy runtime), the file kept, and how to get the image said."""
    out = tmp_path / "melodic" / "net_melodic.pth"
    code, said = _launcher("convert", trained / "net_epoch_01.pth", "--to", "melodic", "--verify", "--out", out,
                           POSE_TRAIN_LEGACY_IMAGE="pose-train/legacy:not-built")
    assert code == 3, said[-3000:]
    assert "NOT VERIFIED" in said and "pose-train images build legacy" in said, said[-3000:]
    assert out.is_file()


def test_the_node_configs_copy_line_names_the_host_path(trained, tmp_path):
    """The file said `cp /host/...`, a path that exists only in the container."""
    out = tmp_path / "deploy" / "config_pose.yaml"
    code, said = _launcher("node-config", trained / "net_epoch_01.pth", "--out", out)
    assert code == 0, said[-3000:]
    assert "#   cp %s dope/weights/net_epoch_01.pth" % (trained / "net_epoch_01.pth") in out.read_text()
