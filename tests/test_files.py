"""The one atomic writer: all or nothing, readable modes, stale temp files cleared."""
import json
import os

import pytest

from pose_train.errors import UserError
from pose_train.files import atomic_folder, atomic_write, atomic_write_json, remove_stale_temps


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "net.pth"
    target.write_bytes(b"old")

    def half(f):
        f.write(b"new but incomplete")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["net.pth"]


def test_json_and_mode(tmp_path):
    path = atomic_write_json(tmp_path / "b.json", {"z": 1, "a": [1, 2]})
    assert json.load(open(path)) == {"z": 1, "a": [1, 2]}
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_missing_or_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker / "inside.json", tmp_path / "no_such_dir" / "a.json"):
        with pytest.raises(UserError, match="cannot write it"):
            atomic_write_json(path, {})
    assert not (tmp_path / "no_such_dir").exists()


def test_stale_temps_of_ours_are_removed_and_nothing_else(tmp_path):
    ours = [tmp_path / ".training_state.pth.k2j3h4.tmp", tmp_path / ".best.json.abc.tmp"]
    others = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "training_state.pth"]
    for path in ours + others:
        path.write_bytes(b"x")
    assert remove_stale_temps(str(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in others)


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    def fill(folder):
        open(os.path.join(folder, "a.json"), "w").write("{}")

    def fail(folder):
        fill(folder)
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        atomic_folder(tmp_path / "set", fail)
    assert os.listdir(tmp_path) == []
    atomic_folder(tmp_path / "set", fill)
    assert os.listdir(tmp_path) == ["set"] and os.listdir(tmp_path / "set") == ["a.json"]


@pytest.mark.parametrize("job", [["train", "dope", "--epochs", "1"],
                                 ["train", "keypoints", "--seq", "1"]])
def test_a_refused_training_run_leaves_no_empty_outf(tmp_path, job, capsys):
    from pose_train.cli import main
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as code:
        main(["--local"] + job + ["--data", str(tmp_path / "empty"), "--outf", str(tmp_path / "out")])
    assert code.value.code == 2 and "error" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_job_folder_keeps_what_was_written_and_folders_that_were_there(tmp_path):
    from pose_train.files import job_folder
    with pytest.raises(RuntimeError):
        with job_folder(tmp_path / "a"):
            (tmp_path / "a" / "data_report.txt").write_text("why")
            raise RuntimeError
    assert (tmp_path / "a" / "data_report.txt").exists()
    (tmp_path / "b").mkdir()
    with pytest.raises(RuntimeError):
        with job_folder(tmp_path / "b"):
            raise RuntimeError
    assert (tmp_path / "b").is_dir()


@pytest.mark.parametrize("job", [["train", "dope", "--epochs", "1"],
                                 ["train", "keypoints", "--seq", "1"]])
def test_a_second_run_into_a_busy_outf_is_refused(tmp_path, job, capsys):
    """Two trainers (or evals) in one --outf both wrote there, and the last writer won."""
    from pose_train.cli import main
    from pose_train_py27.dope_io import OutputClaim
    with OutputClaim(str(tmp_path / "out")):                 # the first run, still going
        with pytest.raises(SystemExit) as code:
            main(["--local"] + job + ["--data", str(tmp_path), "--outf", str(tmp_path / "out")])
    assert code.value.code == 2
    assert "is in use by another pose-train run" in capsys.readouterr().err


@pytest.fixture
def immutable(tmp_path):
    """A folder even root cannot write in (chattr +i): os.access alone says 'writable' to root."""
    import subprocess
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs root with CAP_LINUX_IMMUTABLE on a filesystem that has it")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("job", ["export", "train dope", "train keypoints", "infer", "eval"])
def test_an_unwritable_output_is_one_line_not_a_traceback(immutable, tmp_path, job, capsys):
    import infer_helpers as ih
    from pose_train.cli import main
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    frames = tmp_path / "frames"
    ih.synth_frames(frames, 1)
    argv = {"export": ["export", "onnx", weights, "--out", str(immutable / "x.onnx")],
            "train dope": ["train", "dope", "--data", str(frames), "--epochs", "1"],
            "train keypoints": ["train", "keypoints", "--seq", "1", "--data", str(frames)],
            "infer": ["infer", "dope", weights, "--images", str(frames)],
            "eval": ["eval", "dope", weights, "--data", str(frames)]}[job]
    if job != "export":
        argv += ["--outf", str(immutable / "out")]
    with pytest.raises(SystemExit) as code:
        main(["--local"] + argv)
    err = capsys.readouterr().err
    assert code.value.code == 2 and "is not writable" in err and "Traceback" not in err


@pytest.mark.parametrize("job", ["export", "train dope", "train keypoints", "infer", "eval",
                                 "validate", "synth dope", "synth linemod", "prepare"])
def test_an_output_the_kernel_will_not_make_is_one_line(tmp_path, job, capsys):
    """/proc passes os.access as root, then makedirs failed with a FileNotFoundError traceback."""
    import infer_helpers as ih
    from pose_train.cli import main
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    frames = tmp_path / "frames"
    ih.synth_frames(frames, 1)
    place = "/proc/pose-train-nowhere/out"
    argv = {"export": ["export", "onnx", weights, "--out", place + ".onnx"],
            "train dope": ["train", "dope", "--data", str(frames), "--epochs", "1"],
            "train keypoints": ["train", "keypoints", "--seq", "1", "--data", str(frames)],
            "infer": ["infer", "dope", weights, "--images", str(frames)],
            "eval": ["eval", "dope", weights, "--data", str(frames)],
            "validate": ["validate", "dope", "--data", str(frames)],
            "synth dope": ["synth", "dope", "--n", "1", "--out", place],
            "synth linemod": ["synth", "linemod", "--out", place],
            "prepare": ["prepare", "keypoints", "--seq", "1", "--data", str(frames)]}[job]
    if job not in ("export", "synth dope", "synth linemod"):
        argv += ["--outf", place]
    with pytest.raises(SystemExit) as code:
        main(["--local"] + argv)
    err = capsys.readouterr().err
    assert code.value.code == 2 and place in err.strip().splitlines()[-1] and "Traceback" not in err


def test_an_existing_folder_the_kernel_will_not_write_is_one_line(tmp_path, capsys):
    """export --out /proc/m.onnx: /proc exists, and the .tmp file failed with a traceback."""
    import infer_helpers as ih
    from pose_train.cli import main
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    with pytest.raises(SystemExit) as code:
        main(["--local", "export", "onnx", weights, "--out", "/proc/m.onnx"])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "/proc/m.onnx" in err and "Traceback" not in err


def test_export_into_a_file_names_the_path_that_was_typed(tmp_path, capsys):
    import infer_helpers as ih
    from pose_train.cli import main
    (tmp_path / "w").mkdir()
    weights = ih.write_weights(tmp_path / "w")
    (tmp_path / "afile").write_text("mine")
    out = str(tmp_path / "afile" / "x.onnx")
    with pytest.raises(SystemExit):
        main(["--local", "export", "onnx", weights, "--out", out])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--out " + out in err and "is a file" in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_launched_jobs_paths_are_written_as_the_hosts(monkeypatch):
    """Under the launcher (RUN_ID set) /host/home/me/x is the host's /home/me/x; elsewhere a
    path is left as it is (a --local user may have a real /host folder)."""
    from pose_train.files import host_path
    monkeypatch.delenv("POSE_TRAIN_RUN_ID", raising=False)
    assert host_path("/host/home/me/x.pth") == "/host/home/me/x.pth"
    monkeypatch.setenv("POSE_TRAIN_RUN_ID", "20261207-000000-abcdef")
    assert host_path("/host/home/me/x.pth") == "/home/me/x.pth"
    assert host_path("/hostname/x.pth") == "/hostname/x.pth" and host_path("/out/x") == "/out/x"
