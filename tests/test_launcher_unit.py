"""Launcher argument building, mounts, GPU decisions (fakes only for NVML answers)."""
import os
import signal
import subprocess
import sys

import pytest

from pose_train.cli import parse
from pose_train.errors import UserError
from pose_train.jobs import JOBS
from pose_train.launcher import gpu, run
from pose_train.jobs.checkpoint_jobs import default_convert_out
from pose_train.launcher.paths import plan_mounts

H100 = gpu.GpuReport(driver="580.65", cuda_driver="13.0", gpus=[gpu.Gpu(0, "NVIDIA H100", 79.6, "9.0")])
LEGACY_LABELS = {"io.pose-train.cuda.version": "10.1", "io.pose-train.cuda.archs": "3.5 5.0 6.0 7.0 7.5",
                 "io.pose-train.torch.version": "1.4.0"}
MODERN_LABELS = {"io.pose-train.cuda.version": "13.0", "io.pose-train.cuda.archs": "7.5 8.0 8.6 8.9 9.0 10.0 12.0",
                 "io.pose-train.torch.version": "2.13.0"}


def test_container_argv_flags():
    argv = run.container_argv(JOBS["train-dope"], {"data": ["/a", "/b"], "save": True, "strict": False,
                                                  "net": None, "epochs": 3})
    assert argv == ["train", "dope", "--data=/a", "--data=/b", "--save", "--epochs=3"]
    assert run.container_argv(JOBS["verify-melodic"], {"ckpt": "/x"}) == ["verify", "--ckpt=/x"]


def test_plan_mounts_validates_and_creates(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "new" / "out"
    args, mounts = plan_mounts(JOBS["train-dope"], {"data": [str(data)], "outf": str(out), "net": None})
    assert out.is_dir(), "output folder is created on the host before the container starts"
    assert args["data"] == ["/host" + str(data)] and args["outf"] == "/host" + str(out)
    modes = {m.source: m.read_only for m in mounts}
    assert modes == {str(data): True, str(out): False}
    with pytest.raises(UserError, match="--data .*missing.*no such file"):
        plan_mounts(JOBS["train-dope"], {"data": [str(tmp_path / "missing")], "outf": str(out)})


def test_links_that_would_dangle_in_the_container_are_named(tmp_path):
    """In the container such a frame was only a dangling link, with no word of why."""
    import os
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (data / "a.png").write_bytes(b"x")
    (elsewhere / "b.png").write_bytes(b"x")
    os.symlink("../a.png", str(data / "sub" / "rel.png"))          # relative, inside: fine
    args = {"data": [str(data)], "outf": str(tmp_path / "out"), "net": None}
    plan_mounts(JOBS["train-dope"], args, create=False)
    os.symlink("../../elsewhere/b.png", str(data / "sub" / "out.png"))
    with pytest.raises(UserError, match=r"--data .*: 1 link\(s\) would dangle .*out.png -> "
                                        r"\.\./\.\./elsewhere/b.png; copy the files in"):
        plan_mounts(JOBS["train-dope"], args, create=False)
    os.remove(str(data / "sub" / "out.png"))
    os.symlink(str(data / "a.png"), str(data / "abs.png"))          # absolute, even to inside
    with pytest.raises(UserError, match="abs.png -> /"):
        plan_mounts(JOBS["train-dope"], args, create=False)


def test_convert_out_file_mounts_parent(tmp_path):
    src = tmp_path / "net.pth"
    src.write_bytes(b"x")
    dst = tmp_path / "deploy" / "net_melodic.pth"
    args, mounts = plan_mounts(JOBS["convert"], {"src": str(src), "out": str(dst)})
    assert args["out"] == "/host" + str(dst)
    assert (str(dst.parent), False) in {(m.source, m.read_only) for m in mounts}
    assert default_convert_out("/w/net_epoch_10.pth", "melodic", "pth") == "/w/net_epoch_10_melodic.pth"
    assert default_convert_out("/w/a.pth", "modern", "safetensors") == "/w/a_modern.safetensors"


def test_legacy_image_has_no_kernels_for_hopper():
    problems = gpu.image_problems(H100, LEGACY_LABELS)
    assert problems and "compute capability 9.0" in problems[0]
    assert gpu.image_problems(H100, MODERN_LABELS) == []
    turing = gpu.GpuReport(driver="450", cuda_driver="11.0", gpus=[gpu.Gpu(0, "T4", 15, "7.5")])
    assert gpu.image_problems(turing, LEGACY_LABELS) == []
    assert "update the NVIDIA driver" in gpu.image_problems(turing, MODERN_LABELS)[0]


def test_cpu_image_and_missing_driver_fall_back_with_warning(monkeypatch):
    monkeypatch.setattr(gpu, "probe", lambda: gpu.GpuReport(problem="no NVIDIA driver found"))
    use, warnings = run.decide_gpu(JOBS["train-dope"], {"gpus": None}, MODERN_LABELS)
    assert not use and "running on the CPU" in warnings[0]
    with pytest.raises(UserError, match="--gpus 2 asked for, but no NVIDIA driver"):
        run.decide_gpu(JOBS["train-dope"], {"gpus": 2}, MODERN_LABELS)
    monkeypatch.setattr(gpu, "probe", lambda: H100)
    monkeypatch.setattr(run, "_nvidia_runtime", lambda: True)
    assert run.decide_gpu(JOBS["train-dope"], {"gpus": None}, MODERN_LABELS) == (True, [])
    cpu_labels = {"io.pose-train.cuda.version": "", "io.pose-train.variant": "cpu"}
    assert run.decide_gpu(JOBS["train-dope"], {"gpus": None}, cpu_labels)[0] is False


def test_docker_run_command_has_user_init_shm_gpus(tmp_path):
    spec = run.container_spec(JOBS["train-dope"], {"data": [], "outf": str(tmp_path), "gpus": None},
                              use_gpu=True, run_id="r1")
    line = run.docker_run_command(spec)
    for part in ["--init", "--user %d:%d" % (os.getuid(), os.getgid()), "--shm-size 8g", "--gpus all",
                 "%s:/host%s:rw" % (tmp_path, tmp_path), "io.pose-train.run-id=r1"]:
        assert part in line


def test_cli_repeats_globals_and_seq():
    job, given, local, dry_run = parse(["train", "dope", "--data", "a", "--data=b", "--epochs", "1"])
    assert job.name == "train-dope" and given == {"data": ["a", "b"], "epochs": 1}
    assert parse(["train", "--local", "dope", "--dry-run"])[2:] == (True, True)
    assert parse(["--local", "train", "dope"])[2:] == (True, False)
    seq = [parse(["synth", "linemod", "--seq", value])[1]["seq"] for value in ("01", "1")]
    assert seq == [1, 1]
    with pytest.raises(UserError):
        parse(["synth", "linemod", "--seq", "ape"])


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pose_train"] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_dry_run_prints_docker_command_without_torch(tmp_path):
    code = ("import sys, runpy; sys.argv = ['pose-train', 'train', 'dope', '--dry-run', '--outf', %r];"
            "\ntry:\n    runpy.run_module('pose_train', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'the host launcher imported torch'\n" % str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("docker run --rm --init")


def test_daemon_down_is_one_line_with_fix(tmp_path):
    result = _cli("train", "dope", "--outf", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Docker socket at /nonexistent.sock" in lines[0]


def test_missing_data_dir_is_one_line(tmp_path):
    result = _cli("train", "dope", "--dry-run", "--data", str(tmp_path / "nope"), "--outf", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("pose-train: error: --data ")


def test_resume_auto_is_not_a_path_but_a_state_file_is_mounted(tmp_path):
    state = tmp_path / "training_state.pth"
    state.write_bytes(b"x")
    args, _ = plan_mounts(JOBS["train-dope"], {"data": [], "outf": str(tmp_path), "resume": "auto"})
    assert args["resume"] == "auto"
    args, mounts = plan_mounts(JOBS["train-keypoints"], {"data": str(tmp_path), "outf": str(tmp_path / "o"),
                                                         "resume": str(state)})
    assert args["resume"] == "/host" + str(state) and str(state) in {m.source for m in mounts}


def test_legacy_verify_asked_for_a_gpu_it_cannot_use(monkeypatch):
    monkeypatch.setattr(gpu, "probe", lambda: H100)
    monkeypatch.setattr(run, "_nvidia_runtime", lambda: True)
    with pytest.raises(UserError, match="--gpus 1 asked for, but GPU 0 .*compute capability 9.0.* torch 1.4.0"):
        run.decide_gpu(JOBS["verify-melodic"], {"gpus": 1}, LEGACY_LABELS)
    assert run.decide_gpu(JOBS["verify-melodic"], {"gpus": 0}, LEGACY_LABELS) == (False, [])


def test_legacy_verify_on_a_usable_gpu_passes_a_device(tmp_path):
    ckpt = tmp_path / "a.pth"
    ckpt.write_bytes(b"x")
    spec = run.container_spec(JOBS["verify-melodic"], {"ckpt": str(ckpt), "reference": None, "model": "dope",
                                                       "gpus": 1}, use_gpu=True, run_id="r")
    assert spec["command"] == ["verify", "--ckpt=/host%s" % ckpt, "--model=dope", "--device=cuda"]
    assert spec["gpu_count"] == 1


def test_dry_run_creates_nothing(tmp_path):
    result = _cli("train", "dope", "--dry-run", "--outf", str(tmp_path / "not-yet"))
    assert result.returncode == 0, result.stderr
    assert "/host%s:rw" % (tmp_path / "not-yet") in result.stdout
    assert not (tmp_path / "not-yet").exists()


def test_interrupts_exit_128_plus_the_signal(monkeypatch, capsys):
    """The one error boundary: Ctrl-C exits 130, a SIGTERM turned into Interrupted exits 143."""
    import signal
    from pose_train import cli
    from pose_train.errors import Interrupted
    for exc, code in ((KeyboardInterrupt(), 130), (Interrupted(signal.SIGTERM), 143)):
        def boom(*args, exc=exc, **kwargs):
            raise exc
        monkeypatch.setattr(cli, "run_job", boom)
        with pytest.raises(SystemExit) as stopped:
            cli.main(["doctor"])
        assert stopped.value.code == code
        assert "interrupted" in capsys.readouterr().err


class _FakeContainer:
    """Records what the launcher asks of a container (the real path: test_docker_e2e)."""

    def __init__(self, wait):
        self.kills, self._wait = [], wait

    def kill(self, signal="SIGKILL"):
        self.kills.append(signal)

    def wait(self, timeout=None):
        return self._wait(timeout)


def test_first_stop_asks_the_job_and_returns_its_exit_code(capsys, monkeypatch):
    from pose_train.errors import Interrupted
    from pose_train.launcher import run
    monkeypatch.setenv("POSE_TRAIN_STOP_WAIT", "42")
    waits = []
    c = _FakeContainer(lambda timeout: waits.append(timeout) or {"StatusCode": 0})
    assert run._stop_gracefully(c, "pose-train-x", Interrupted(signal.SIGTERM)) == 0
    assert c.kills == ["SIGTERM"] and waits == [42.0]
    assert "waiting up to 42 s" in capsys.readouterr().err


def test_a_stop_that_runs_out_of_time_kills_and_says_so(capsys, monkeypatch):
    import requests.exceptions
    from pose_train.launcher import run
    monkeypatch.setenv("POSE_TRAIN_STOP_WAIT", "1")

    def too_slow(timeout):
        raise requests.exceptions.ReadTimeout()
    c = _FakeContainer(too_slow)
    assert run._stop_gracefully(c, "pose-train-x", KeyboardInterrupt()) == 130
    assert c.kills == ["SIGTERM", "SIGKILL"]
    assert "did not stop within 1 s" in capsys.readouterr().err
    monkeypatch.setenv("POSE_TRAIN_STOP_WAIT", "soon")
    with pytest.raises(Exception, match="POSE_TRAIN_STOP_WAIT must be a number"):
        run.stop_wait()


def test_weights_are_mounted_with_their_folder_so_the_sidecar_is_seen(tmp_path):
    """infer dope reads net_epoch_01.json beside the weights: the folder goes in, read-only."""
    weights = tmp_path / "run" / "net_epoch_01.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    (tmp_path / "f.png").write_bytes(b"x")
    args = {"weights": str(weights), "images": [str(tmp_path / "f.png")], "outf": str(tmp_path / "o")}
    new_args, mounts = plan_mounts(JOBS["infer-dope"], args)
    assert new_args["weights"] == "/host" + str(weights)
    by_source = {m.source: m.read_only for m in mounts}
    assert by_source[str(weights.parent)] is True and str(weights) not in by_source
    assert by_source[str(tmp_path / "o")] is False


def test_the_jobs_output_names_host_paths_even_when_a_chunk_splits_one(tmp_path, capsysbinary):
    """The container printed `continue with: ... --outf /host/home/me/out`, a path that does not
    exist on the host where the user pastes it."""
    out = "/host" + str(tmp_path / "out")

    class Logs:
        def logs(self, stream, follow):
            line = ("state saved\ncontinue with: pose-train train dope --outf %s --resume auto\n"
                    "epoch 1: step 2/3\r" % out).encode()
            return iter([line[:40], line[40:len(line) - 30], line[len(line) - 30:], b"tail /host/x"])

    with open(tmp_path / "job.log", "wb") as log:
        run._stream(Logs(), log)
    shown = capsysbinary.readouterr().out.decode()
    assert "--outf %s --resume auto" % (tmp_path / "out") in shown and "/host/" not in shown
    assert shown.endswith("tail /x") and (tmp_path / "job.log").read_bytes().decode() == shown


def test_a_sigterm_before_a_job_handles_its_own_ends_it_with_a_line(capsys):
    """A SIGTERM while torch loaded (infer's first seconds) ended the process silently."""
    import os
    import signal
    from pose_train import cli
    from pose_train.errors import Interrupted
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stopped:
        with cli._sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):     # the handler runs between bytecodes
                pass
    assert stopped.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) == before


def test_images_list_names_the_commit_time_and_the_build_time(monkeypatch, capsys):
    """CREATED showed the label (the commit's time) and was read as the build's."""
    from types import SimpleNamespace
    from pose_train.launcher import docker_engine, docker_images
    image = SimpleNamespace(tags=["pose-train/modern:0.1.0"], short_id="sha256:abc",
                            labels={docker_images.LABEL_RUNTIME: "modern",
                                    "io.pose-train.torch.version": "2.13.0",
                                    "org.opencontainers.image.created": "2026-12-01T10:00:00Z"},
                            attrs={"Created": "2026-12-07T11:22:33.123456789Z"})
    client = SimpleNamespace(images=SimpleNamespace(list=lambda filters: [image]))
    monkeypatch.setattr(docker_engine, "connect", lambda: client)
    docker_images.list_images()
    header, row = capsys.readouterr().out.splitlines()
    assert "SOURCE (commit time)" in header and "BUILT" in header and "CREATED" not in header
    assert "2026-12-01T10:00:00Z" in row and row.endswith("2026-12-07T11:22:33")


def test_the_launchers_claim_name_is_the_jobs():
    """The launcher tidies a folder holding only its log and the job's claim; it names the claim
    without importing the module that makes it (cv2)."""
    from pose_train_py27.dope_io import OutputClaim
    assert run.CLAIM_LOCK == OutputClaim.LOCK


def test_an_output_folder_that_is_a_file_is_refused_before_the_engine(tmp_path):
    """It said "cannot create the folder (File exists)"."""
    taken = tmp_path / "afile"
    taken.write_text("mine")
    with pytest.raises(UserError, match="--outf %s is a file; pass a folder" % taken):
        plan_mounts(JOBS["train-dope"], {"data": None, "outf": str(taken)}, create=False)
    assert taken.read_text() == "mine"


def test_version_is_said():
    """`pose-train --version` asked for a COMMAND."""
    from pose_train import __version__
    done = subprocess.run([sys.executable, "-m", "pose_train", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "pose-train %s" % __version__, done
