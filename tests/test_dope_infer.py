"""infer dope, the job: its outputs, camera files and bad-input lines (the post-processing itself
is checked against the node in test_dope_decode.py)."""
import json

import cv2
import numpy as np
import pytest

import infer_helpers as ih
from pose_train_py27.dope_io import camera_from_yaml


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    return ih.synth_frames(folder, 30)


def _infer(*args):
    return ih.local_cli("infer", "dope", *args)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return ih.write_weights(tmp_path_factory.mktemp("weights"))


def test_infer_writes_the_run_and_each_frame(weights, frames, tmp_path):
    out = tmp_path / "out"
    assert _infer(weights, "--images", frames[0].replace(".json", ".png"), "--images",
                  frames[1].replace(".json", ".png"), "--outf", out, "--belief_grid") == 0
    run = json.load(open(out / "detections.json"))
    assert [f["name"] for f in run["frames"]] == ["000000", "000001"]
    assert run["normalization"] == "ros" and run["settings"]["sigma"] == pytest.approx(0.96)
    assert run["object"] == "cube" and run["dimensions_cm"] == ih.DIMS_CM
    frame = run["frames"][0]
    assert frame["network_ms"] > 0 and frame["post_ms"] > 0 and frame["network_input"] == [170, 128]
    assert frame["camera"]["fx"] > 0 and isinstance(frame["objects"], list)
    annotation = json.load(open(out / "000000.json"))
    assert set(annotation) == {"camera_data", "image", "objects"}
    assert set(annotation["camera_data"]["intrinsics"]) == {"fx", "fy", "cx", "cy"}
    for name in ("000000.png", "000001.png", "000000.belief.png"):
        assert cv2.imread(str(out / name)) is not None


def test_infer_takes_a_video_and_a_camera_info_yaml(weights, frames, tmp_path):
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for path in frames[:3]:
        writer.write(cv2.imread(path.replace(".json", ".png")))
    writer.release()
    cam = tmp_path / "camera_info.yaml"
    cam.write_text("image_width: 320\nimage_height: 240\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                   "  data: [288.0, 0.0, 160.0, 0.0, 288.0, 120.0, 0.0, 0.0, 1.0]\n")
    assert camera_from_yaml(str(cam))["cx"] == 160.0
    assert _infer(weights, "--images", video, "--camera", cam, "--outf", tmp_path / "o") == 0
    run = json.load(open(tmp_path / "o" / "detections.json"))
    assert [f["name"] for f in run["frames"]] == ["clip_000000", "clip_000001", "clip_000002"]


def _bad_cases(tmp_path, weights, frames):
    from pose_train_py27.nets import FastPose
    import torch
    png = frames[0].replace(".json", ".png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8" + b"\0" * 64)
    lonely = tmp_path / "lonely" / "f.png"
    lonely.parent.mkdir()
    lonely.write_bytes(open(png, "rb").read())
    fastpose = tmp_path / "fastpose.pth"
    torch.save(FastPose(num_classes=3).state_dict(), str(fastpose))
    bare = tmp_path / "bare.pth"
    bare.write_bytes(open(weights, "rb").read())   # no sidecar: no dimensions
    cam = tmp_path / "cam.yaml"
    cam.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {data: [1, 0, 1, 0, 1, "
                   "1, 0, 0, 1]}\n")
    return {
        "unreadable image": ([weights, "--images", broken], broken, "damaged JPEG"),
        "no camera": ([weights, "--images", lonely], lonely, "no camera"),
        "other network": ([fastpose, "--images", png, "--dimensions", "1,2,3"], fastpose,
                          "FastPose"),
        "no dimensions": ([bare, "--images", png], bare, "--dimensions X,Y,Z"),
        "camera size": ([weights, "--images", png, "--camera", cam], png, "640x480"),
    }


@pytest.mark.parametrize("case", ["unreadable image", "no camera", "other network",
                                  "no dimensions", "camera size"])
def test_bad_input_is_one_line_naming_the_file(case, weights, frames, tmp_path, capsys):
    args, named, says = _bad_cases(tmp_path, weights, frames)[case]
    out = tmp_path / "out"
    assert _infer(*(args + ["--outf", out])) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and str(named) in lines[0] and says in lines[0], err
    assert "Traceback" not in err
    assert not (out / "detections.json").exists()


def test_melodic_runtime_is_not_run_in_this_process(weights, capsys):
    assert _infer(weights, "--images", "x.png", "--runtime", "melodic") == 2
    assert "--runtime melodic runs in the legacy image" in capsys.readouterr().err


def test_an_outf_inside_the_images_folder_is_not_read_back(tmp_path):
    """A rerun used to infer its own overlays too: 4 frames, then 8, then 16."""
    import infer_helpers as ih2
    frames = tmp_path / "frames"
    ih2.synth_frames(frames, 2, seed=4)
    (tmp_path / "w").mkdir()
    weights = ih2.write_weights(tmp_path / "w")
    for _ in range(2):
        assert ih2.local_cli("infer", "dope", weights, "--images", frames, "--outf", frames / "out") == 0
        record = json.load(open(frames / "out" / "detections.json"))
        assert len(record["frames"]) == 2


def test_damaged_jpegs_are_named(tmp_path, capsys):
    import cv2
    import infer_helpers as ih2
    frames = tmp_path / "frames"
    ih2.synth_frames(frames, 1, seed=4)
    png = sorted(frames.glob("*.png"))[0]
    cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
    png.unlink()
    data = bytearray(png.with_suffix(".jpg").read_bytes())
    middle = len(data) * 3 // 10    # where libjpeg notices (zeros elsewhere can decode silently)
    data[middle:middle + 300] = b"\x00" * 300
    png.with_suffix(".jpg").write_bytes(bytes(data))
    (tmp_path / "w").mkdir()
    weights = ih2.write_weights(tmp_path / "w")
    assert ih2.local_cli("infer", "dope", weights, "--images", frames, "--outf", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(png.with_suffix(".jpg")) in err and "damaged JPEG (Corrupt JPEG data" in err
    png.with_suffix(".jpg").write_bytes(bytes(data[:middle]))
    assert ih2.local_cli("infer", "dope", weights, "--images", frames, "--outf", tmp_path / "out") == 2
    assert "cut short" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["infer", "eval"])
def test_an_outf_that_is_a_file_is_refused_before_the_network(command, weights, frames, tmp_path, capsys):
    """A Python traceback before; now one line, and nothing written."""
    import os
    folder = os.path.dirname(frames[0])
    taken = tmp_path / "taken"
    taken.write_text("mine")
    where = ["--images", folder] if command == "infer" else ["--data", folder, "--object", "cube"]
    for outf in (taken, taken / "sub"):
        assert ih.local_cli(command, "dope", weights, *where, "--outf", outf) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert str(taken) in err and "is a file" in err
    assert taken.read_text() == "mine"


def test_sizes_that_would_exhaust_memory_are_refused(weights, tmp_path, capsys):
    assert ih.local_cli("export", "onnx", weights, "--height", "100000", "--width", "100000",
                        "--out", tmp_path / "big.onnx") == 2
    assert "--height must be at most 4320" in capsys.readouterr().err
    assert not (tmp_path / "big.onnx").exists()


def test_other_weights_are_named_as_such_before_dimensions_are_asked_for(frames, tmp_path, capsys):
    """A keypoint network given to infer dope was asked for --dimensions first."""
    import torch
    from pose_train_py27.nets import FastPose
    other = tmp_path / "best.pkl"
    torch.save(FastPose(num_classes=9).state_dict(), str(other))
    assert ih.local_cli("infer", "dope", other, "--images", frames[0].replace(".json", ".png"),
                        "--outf", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "FastPose" in err and "--dimensions" not in err


def test_a_second_run_in_the_same_outf_is_refused_while_the_first_holds_it(weights, frames, tmp_path, capsys):
    """Two runs into one --outf both reported success before; the last writer won."""
    from pose_train_py27.dope_io import OutputClaim
    png = frames[0].replace(".json", ".png")
    with OutputClaim(str(tmp_path / "out"), "detections.json"):      # the first run, still going
        assert ih.local_cli("infer", "dope", weights, "--images", png, "--outf", tmp_path / "out") == 2
        assert "is in use by another pose-train run" in capsys.readouterr().err.strip().splitlines()[-1]
    assert ih.local_cli("infer", "dope", weights, "--images", png, "--outf", tmp_path / "out") == 0


def test_an_interrupted_rerun_leaves_no_record_of_the_run_before(weights, frames, tmp_path):
    """A Ctrl-C'd rerun kept the previous detections.json beside its own new frames."""
    import os
    import shutil
    folder = tmp_path / "frames"
    shutil.copytree(os.path.dirname(frames[0]), folder)
    assert ih.local_cli("infer", "dope", weights, "--images", folder, "--outf", tmp_path / "out") == 0
    assert (tmp_path / "out" / "detections.json").exists()
    last = sorted(folder.glob("*.png"))[-1]
    data = bytearray(cv2.imencode(".jpg", cv2.imread(str(last)))[1].tobytes())
    data[len(data) * 3 // 10:len(data) * 3 // 10 + 300] = b"\x00" * 300   # complete, corrupt inside:
    last.with_suffix(".jpg").write_bytes(bytes(data))               # the rerun stops at it
    last.unlink()
    assert ih.local_cli("infer", "dope", weights, "--images", folder, "--outf", tmp_path / "out") == 2
    assert not (tmp_path / "out" / "detections.json").exists()


def test_a_stopped_run_records_and_says_what_it_finished(weights, frames, tmp_path):
    """SIGTERM used to end infer silently, with no detections.json for the frames it wrote."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pose_train.cli", "--local", "infer", "dope", weights,
           "--images", os.path.dirname(frames[0]), "--outf", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 240
    while not (out / "000001.png").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    record = json.load(open(str(out / "detections.json")))
    done = sorted(p.stem for p in out.glob("*.png"))
    assert record["stopped_by"] == "SIGTERM" and 2 <= len(record["frames"]) < 30
    assert [f["name"] for f in record["frames"]] == done[:len(record["frames"])]
    assert "%d frame(s)" % len(record["frames"]) in stdout


def test_an_image_over_the_pixel_cap_is_refused_by_name(weights, frames, tmp_path, capsys):
    import shutil
    from test_dope_data import claim_size
    png = tmp_path / "big.png"
    shutil.copy(frames[0].replace(".json", ".png"), str(png))
    claim_size(png, 60000, 60000)
    assert ih.local_cli("infer", "dope", weights, "--images", png, "--outf", tmp_path / "o") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "big.png: 60000x60000" in last and "--max_pixels" in last and "Traceback" not in err
    assert ih.local_cli("infer", "dope", weights, "--images", png, "--outf", tmp_path / "o",
                        "--max_pixels", str(2 ** 31)) == 2
    assert "--max_pixels must be at most" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_jpegs_exif_rotation_is_not_applied(tmp_path):
    """Annotations and the node see the stored pixels; infer and eval used to rotate a JPEG
    whose EXIF says 'rotate 90', then score keypoints against the turned frame."""
    import struct
    import cv2
    from pose_train_py27.image_files import decode_checked
    img = np.zeros((40, 64, 3), np.uint8)
    img[:, :8] = 255                                           # a white left edge
    ok, buf = cv2.imencode(".jpg", img)
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    exif = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    data = buf.tobytes()
    path = tmp_path / "turned.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:])
    assert cv2.imread(str(path)).shape[:2] == (64, 40)          # what the old read gave
    stored = decode_checked(str(path))
    assert stored.shape[:2] == (40, 64) and stored[:, :4].mean() > 200


def test_a_bad_last_frame_is_refused_before_any_frame_is_written(weights, frames, tmp_path, capsys):
    """The check came when the loop reached the frame: the earlier frames' outputs stayed."""
    import os
    import shutil
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in frames[:3]:
        shutil.copy(path, str(folder))
        shutil.copy(path.replace(".json", ".png"), str(folder))
    os.remove(str(folder / os.path.basename(frames[2])))      # the last frame has no camera
    out = tmp_path / "out"
    assert ih.local_cli("infer", "dope", weights, "--images", folder, "--outf", out) == 2
    assert "no camera" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists() or not list(out.glob("*.png"))


CALIBRATED = ("image_width: 320\nimage_height: 240\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
              "  data: [300.0, 0.0, 158.0, 0.0, 302.0, 121.0, 0.0, 0.0, 1.0]\n"
              "distortion_model: plumb_bob\ndistortion_coefficients:\n  rows: 1\n  cols: 5\n"
              "  data: [-0.21, 0.05, 0.001, -0.002, 0.0]\n"
              "projection_matrix:\n  rows: 3\n  cols: 4\n"
              "  data: [270.0, 0.0, 160.0, 0.0, 0.0, 275.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0]\n")


def test_a_camera_info_is_read_as_the_node_reads_it(weights, frames, tmp_path, capsys):
    """The node's default (input_is_rectified: true) poses with P; pose-train took K, so the
    poses of a calibrated camera differed from the robot's."""
    cam = tmp_path / "ost.yaml"
    cam.write_text(CALIBRATED)
    rectified = camera_from_yaml(str(cam))
    assert (rectified["fx"], rectified["fy"], rectified["cx"], rectified["cy"]) == (270, 275, 160, 120)
    assert "distortion" not in rectified
    raw = camera_from_yaml(str(cam), rectified=False)
    assert (raw["fx"], raw["fy"], raw["cx"], raw["cy"]) == (300, 302, 158, 121)
    assert raw["distortion"] == [-0.21, 0.05, 0.001, -0.002, 0.0]
    png = frames[0].replace(".json", ".png")
    assert _infer(weights, "--images", png, "--camera", cam, "--outf", tmp_path / "r") == 0
    assert json.load(open(tmp_path / "r" / "detections.json"))["frames"][0]["camera"]["fx"] == 270
    assert _infer(weights, "--images", png, "--camera", cam, "--unrectified", "--outf", tmp_path / "u") == 0
    assert json.load(open(tmp_path / "u" / "detections.json"))["frames"][0]["camera"]["fx"] == 300
    assert _infer(weights, "--images", png, "--unrectified", "--outf", tmp_path / "x") == 2
    assert "--unrectified reads K and D from a ROS camera_info YAML" in capsys.readouterr().err


def test_a_rerun_on_fewer_frames_leaves_only_its_own_files(weights, frames, tmp_path):
    """The first run's per-frame files stayed beside the second run's 1-frame detections.json."""
    out = tmp_path / "out"
    pngs = [p.replace(".json", ".png") for p in frames[:3]]
    assert _infer(weights, *sum((["--images", p] for p in pngs), []), "--outf", out) == 0
    (out / "notes.txt").write_text("mine")
    assert _infer(weights, "--images", pngs[0], "--outf", out) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "000000.json", "000000.png", "detections.json", "notes.txt"]


def test_a_frame_found_damaged_mid_run_leaves_no_per_frame_files(weights, tmp_path, capsys):
    """A corrupt JPEG (complete, so only decoding finds it) stopped the run and left the earlier
    frames' files without a detections.json."""
    frames = tmp_path / "frames"
    ih.synth_frames(frames, 3, seed=6)
    jpg = ih.corrupt_jpeg(sorted(frames.glob("*.png"))[1])
    assert _infer(weights, "--images", frames, "--outf", tmp_path / "out") == 2
    assert str(jpg) in capsys.readouterr().err
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")] \
        if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("content, said", [(b"", "it ends early"), (b"\x8a\x0a" + b"x" * 500, "not a torch file"),
                                           (None, "it ends early")])
def test_a_file_that_is_not_weights_says_what_it_is(weights, frames, tmp_path, capsys, content, said):
    """The line said "(EOFError)" or "(Unsupported operand 101)"."""
    path = tmp_path / "net.pth"
    path.write_bytes(open(weights, "rb").read()[:100] if content is None else content)
    assert _infer(str(path), "--images", frames[0].replace(".json", ".png"), "--outf", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(path) in err and said in err and "EOFError" not in err


def test_two_cameras_or_an_unused_flag_are_refused(weights, frames, tmp_path, capsys):
    """--camera with --fx.. took the flags silently; --unrectified with --fx.. was ignored."""
    cam = tmp_path / "ost.yaml"
    cam.write_text(CALIBRATED)
    png = frames[0].replace(".json", ".png")
    flags = ["--fx", "100", "--fy", "100", "--cx", "1", "--cy", "1"]
    assert _infer(weights, "--images", png, "--camera", cam, *flags, "--outf", tmp_path / "a") == 2
    assert "are two cameras; give one" in capsys.readouterr().err
    assert _infer(weights, "--images", png, "--unrectified", *flags, "--outf", tmp_path / "b") == 2
    assert "--unrectified reads K and D" in capsys.readouterr().err


@pytest.mark.parametrize("width", ["0", "-320"])
def test_a_camera_of_no_size_is_refused_not_taken_for_any_size(weights, frames, tmp_path, capsys, width):
    """image_width: 0 was read as "size unknown": a 640x480 calibration posed 64x48 frames."""
    cam = tmp_path / "ost.yaml"
    cam.write_text(CALIBRATED.replace("image_width: 320", "image_width: " + width))
    png = frames[0].replace(".json", ".png")
    assert _infer(weights, "--images", png, "--camera", cam, "--outf", tmp_path / "o") == 2
    assert "%s gives image width %s: write the size the camera was calibrated at" % (cam, width) \
        in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, said", [
    (lambda t: t.split("projection_matrix")[0], "no projection_matrix (P)"),
    (lambda t: t.replace("plumb_bob", "equidistant"), "distortion_model equidistant"),
    (lambda t: t.replace("-0.21,", ".nan,"), "distortion_coefficients must be finite")])
def test_a_camera_info_the_node_would_read_otherwise_is_said(tmp_path, capsys, change, said):
    from pose_train_py27.dope_io import InputError
    cam = tmp_path / "ost.yaml"
    cam.write_text(change(CALIBRATED))
    try:
        camera_from_yaml(str(cam), rectified="projection" in said)
        camera_from_yaml(str(cam), rectified=False)
    except InputError as err:
        assert said in str(err) and str(cam) in str(err)
        return
    assert said in capsys.readouterr().err
