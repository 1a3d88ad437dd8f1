"""synth dope --mesh reruns and stops: what the folder's settings record holds (every file the
mesh loads), MTL names as Blender writes them, and a closed terminal's stop."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import mesh_files
from infer_helpers import local_cli


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    return mesh_files.textured_box(str(tmp_path_factory.mktemp("mesh")))


def test_a_rerun_after_the_texture_changed_is_refused(tmp_path, capsys):
    """The record hashed the .obj only: a new label made frames 3-5 look unlike frames 0-2."""
    box = mesh_files.textured_box(str(tmp_path / "m"))
    common = ["synth", "dope", "--mesh", box, "--out", tmp_path / "ds", "--width", 64,
              "--height", 48, "--workers", 1]
    assert local_cli(*common, "--n", 2) == 0
    record = json.load(open(tmp_path / "ds" / "_synth_settings.json"))
    assert sorted(record["mesh_files_sha256"]) == ["box.mtl", "box.png"]
    cv2.imwrite(str(tmp_path / "m" / "box.png"), np.full((64, 96, 3), 200, np.uint8))
    capsys.readouterr()
    assert local_cli(*common, "--n", 4) == 2
    err = capsys.readouterr().err
    assert "another mesh_files_sha256 (changed since: box.png)" in err, err
    assert len([n for n in os.listdir(tmp_path / "ds") if n.endswith(".png")]) == 2


def test_a_texture_name_with_a_space_is_read_as_blender_writes_it(tmp_path, capsys):
    box = mesh_files.textured_box(str(tmp_path / "m"))
    os.rename(tmp_path / "m" / "box.png", tmp_path / "m" / "my label.png")
    mtl = (tmp_path / "m" / "box.mtl").read_text()
    assert "map_Kd box.png" in mtl
    (tmp_path / "m" / "box.mtl").write_text(mtl.replace("map_Kd box.png", "map_Kd my label.png"))
    assert local_cli("synth", "dope", "--mesh", box, "--out", tmp_path / "ds", "--n", 1,
                     "--width", 64, "--height", 48, "--workers", 1) == 0
    record = json.load(open(tmp_path / "ds" / "_synth_settings.json"))
    assert "my label.png" in record["mesh_files_sha256"]
    assert "no texture" not in capsys.readouterr().out        # drawn with it, not grey
    # Options on the line: the reader would load no image (grey, "no texture"): refused.
    (tmp_path / "m" / "box.mtl").write_text(mtl.replace("map_Kd box.png",
                                                        "map_Kd -s 1 1 1 my label.png"))
    assert local_cli("synth", "dope", "--mesh", box, "--out", tmp_path / "ds2", "--n", 1,
                     "--width", 64, "--height", 48) == 2
    assert "map_Kd with options (-s) is read without its texture; write it as `map_Kd my " \
        "label.png`" in capsys.readouterr().err


def test_a_closed_terminal_stops_synth_with_the_frames_said(box, tmp_path, terminal_signals):
    """SIGHUP killed synth at once: frames intact, but no "stopped with N of M" line."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pose_train", "--local", "synth", "dope",
                             "--mesh", str(box), "--out", str(out), "--n", "2000", "--width", "64",
                             "--height", "48", "--workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=terminal_signals)
    deadline = time.time() + 120
    while time.time() < deadline and len(glob.glob(str(out / "0*.json"))) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 129, err
    frames = len(glob.glob(str(out / "0*.json")))
    assert "stopped with %d of 2000 frames" % frames in err and "(SIGHUP)" in err, err


def test_nohup_keeps_synth_running_through_a_closed_terminal(box, tmp_path):
    """SIGHUP ignored by nohup stays ignored: the run outlives the terminal and finishes."""
    out = tmp_path / "out"
    proc = subprocess.Popen(["nohup", sys.executable, "-m", "pose_train", "--local", "synth",
                             "dope", "--mesh", str(box), "--out", str(out), "--n", "30",
                             "--width", "64", "--height", "48", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and len(glob.glob(str(out / "0*.json"))) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=120)
    assert proc.returncode == 0 and len(glob.glob(str(out / "0*.json"))) == 30


def test_a_shard_with_no_frames_says_so_and_writes_nothing(box, tmp_path, capsys):
    assert local_cli("synth", "dope", "--mesh", box, "--out", tmp_path / "out", "--n", 6,
                     "--shard", "99/100", "--width", 64, "--height", 48) == 0
    assert "--shard 99/100 of --n 6 holds no frames" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_stopped_before_its_first_frame_leaves_nothing(box, tmp_path, monkeypatch, existing):
    """It left _synth_settings.json (or an empty --out), which then refused other settings."""
    from pose_train.dope import mesh_frames

    def stopped(*args, **kw):
        raise KeyboardInterrupt
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    monkeypatch.setattr(mesh_frames, "write_frames", stopped)
    assert local_cli("synth", "dope", "--mesh", box, "--out", out, "--n", 2, "--width", 64,
                     "--height", 48) == 130
    assert (os.listdir(out) == []) if existing else not out.exists()


def test_a_smaller_n_into_a_larger_set_says_the_frames_past_it(box, tmp_path, capsys):
    """--n 2 into a folder of 4 said "wrote 0 frames, kept 2" while a trainer reads all 4."""
    common = ["synth", "dope", "--mesh", box, "--out", tmp_path / "ds", "--width", 64,
              "--height", 48, "--workers", 1]
    assert local_cli(*common, "--n", 4) == 0
    capsys.readouterr()
    assert local_cli(*common, "--n", 2) == 0
    assert "also holds 2 frame(s) past --n 2 from an earlier run; a trainer reads every frame " \
        "there (4)" in capsys.readouterr().out
