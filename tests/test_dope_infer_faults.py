"""infer dope on what breaks a run: frames too small for the network, a full disk. Each is one
line naming the file, and the run leaves no per-frame files behind."""
import os

import cv2
import numpy as np
import pytest

import infer_helpers as ih


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return ih.write_weights(tmp_path_factory.mktemp("w"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return ih.synth_frames(tmp_path_factory.mktemp("frames"), 2, seed=3)


def _infer(*args):
    return ih.local_cli("infer", "dope", *args)


def test_a_frame_too_small_for_the_network_is_refused_by_name(weights, frames, tmp_path, capsys):
    """A 1x1 image was a torch RuntimeError ("output size is too small") from the pooling."""
    import shutil
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    shutil.copy(frames[0], str(tmp_path / "tiny.json"))       # its camera
    assert ih.local_cli("infer", "dope", weights, "--images", tiny, "--outf", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "tiny.png: 1x1 is smaller than the 8 x 8 pixels" in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("fail_at", [3, 7])   # a frame's overlay; detections.json itself
def test_a_full_disk_is_one_line_and_leaves_no_per_frame_files(weights, tmp_path, capsys,
                                                                monkeypatch, fail_at):
    """ENOSPC under infer dope was a traceback from write_atomic, per-frame files left."""
    import errno
    from pose_train_py27 import infer_output
    frames = tmp_path / "frames"
    ih.synth_frames(frames, 3, seed=6)
    real, calls = infer_output.write_atomic, []

    def filling_up(path, *args, **kw):
        calls.append(path)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kw)
    monkeypatch.setattr(infer_output, "write_atomic", filling_up)
    assert _infer(weights, "--images", frames, "--outf", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "cannot write it (No space left on device)" in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and os.path.basename(calls[-1]) in err
    out = tmp_path / "out"       # a refused run leaves no --outf it made, or an empty one
    assert not out.exists() or [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
