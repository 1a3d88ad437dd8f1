"""DOPE inference in both runtimes: synthetic frames, the maps a perfect network gives for them,
and checks that the legacy runtime (local python2.7 or the legacy image, as in compat_helpers)
computes the same detections as this one."""
import glob
import json
import os

import numpy as np

import compat_helpers as h
from pose_train.dope.synth import OBJECT_SIZE, write_dataset
from pose_train.dope.targets import ideal_maps
from pose_train_py27.cuboid import rotation_angle_deg
from pose_train_py27.dope_decode import decode_settings, detect
from pose_train_py27.dope_io import camera_from_json, camera_matrix

DIMS_CM = [100.0 * v for v in OBJECT_SIZE]
SETTINGS = decode_settings({"imagesize": 128, "frame_size": [320, 240]})


def synth_frames(folder, n, seed=3):
    write_dataset(str(folder), n, seed=seed, width=320, height=240, progress=False)
    return sorted(glob.glob(os.path.join(str(folder), "*.json")))


def frame_maps(json_path, settings=SETTINGS, noise=0.0, rng=None, object_class="cube"):
    """(beliefs, affinities, K, annotated objects of the class, scale) at the network's input
    size; a frame without one gives empty maps."""
    ann = json.load(open(json_path))
    cam = camera_from_json(ann, json_path)
    scale = min(1.0, settings["downscale_height"] / float(cam["height"]))
    K = camera_matrix(cam)
    K[:2] *= scale
    cubes = [o for o in ann["objects"] if o["class"] == object_class]
    pts = np.array([o["projected_cuboid"] for o in cubes]).reshape(-1, 9, 2) * scale
    beliefs, affinities = ideal_maps(pts, (int(cam["width"] * scale), int(cam["height"] * scale)))
    if noise:
        beliefs = beliefs + rng.normal(0, noise, beliefs.shape).astype(np.float32)
        affinities = affinities + rng.normal(0, noise, affinities.shape).astype(np.float32)
    return beliefs, affinities, K, cubes, scale


def local_cli(*argv):
    """pose-train --local ARGV in this process; its exit code."""
    from pose_train.cli import main as cli_main
    try:
        cli_main(["--local"] + [str(a) for a in argv])
    except SystemExit as err:
        return err.code
    return 0


def assert_same_detections(ours, theirs, px=0.5, mm=1.0, deg=0.5):
    """The tolerance the two runtimes must meet: 2D points, location, rotation."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for a, b in zip(ours, theirs):
        assert [p is None for p in a["points_found"]] == [p is None for p in b["points_found"]]
        assert (a["location"] is None) == (b["location"] is None)
        if a["location"] is None:
            continue
        assert np.abs(np.array(a["projected_cuboid"]) - b["projected_cuboid"]).max() < px
        assert 1000 * np.linalg.norm(np.subtract(a["location"], b["location"])) < mm
        assert rotation_angle_deg(a["quaternion_xyzw"], b["quaternion_xyzw"]) < deg


_DECODE_SCRIPT = """
import json, sys
import numpy as np
from pose_train_py27.dope_decode import detect
maps = np.load(sys.argv[1])
cfg = json.load(open(sys.argv[2]))
out = [detect(maps["b%d" % i], maps["a%d" % i], np.array(cfg["K"][i]), cfg["dims"], cfg["settings"])
       for i in range(len(cfg["K"]))]
json.dump(out, open(sys.argv[3], "w"))
"""


def check_decode_parity(python_argv, workdir):
    """Maps of 8 frames (noisy, some with two objects) decode to the same poses in both."""
    rng = np.random.default_rng(0)
    arrays, Ks, ours = {}, [], []
    for i, path in enumerate(synth_frames(os.path.join(workdir, "frames"), 8)):
        b, a, K, _, _ = frame_maps(path, noise=0.01, rng=rng)
        if i % 2:   # a second object: the same maps shifted sideways, merged by max
            b, a = np.maximum(b, np.roll(b, 6, axis=2)), a + np.roll(a, 6, axis=2)
        arrays["b%d" % i], arrays["a%d" % i] = b, a
        Ks.append(K.tolist())
        ours.append(detect(b, a, K, DIMS_CM, SETTINGS))
    np.savez(os.path.join(workdir, "maps.npz"), **arrays)
    with open(os.path.join(workdir, "cfg.json"), "w") as f:
        json.dump({"K": Ks, "dims": DIMS_CM, "settings": SETTINGS}, f)
    out = os.path.join(workdir, "legacy.json")
    h.run_legacy(python_argv, ["-c", _DECODE_SCRIPT, os.path.join(workdir, "maps.npz"),
                               os.path.join(workdir, "cfg.json"), out])
    theirs = json.load(open(out))
    assert sum(len(d) for d in ours) >= 12   # not a comparison of empty lists
    for a, b in zip(ours, theirs):
        assert_same_detections(a, b)


def write_weights(folder, seed=0, object_name="cube"):
    """Random-init DOPE weights with the trainer's sidecar (128 px crops of 320x240 frames)."""
    import torch
    from pose_train.dope.weights_files import save_epoch_weights
    from pose_train_py27.sidecar import dope_meta
    from pose_train_py27.nets import DopeNetwork
    torch.manual_seed(seed)
    os.makedirs(str(folder), exist_ok=True)
    meta = dope_meta(object_name, 128, "ros", 0.5, DIMS_CM, [320, 240])
    assert meta["decode"] == SETTINGS
    return save_epoch_weights(str(folder), DopeNetwork(), 1, meta)


def check_infer_parity(python_argv, workdir):
    """infer dope on the same weights and frames: the same records from both runtimes."""
    weights = write_weights(workdir)
    synth_frames(os.path.join(workdir, "frames"), 3)
    frames = os.path.join(workdir, "frames")
    assert local_cli("infer", "dope", weights, "--images", frames, "--outf",
                     os.path.join(workdir, "modern")) == 0
    h.run_legacy(python_argv, ["-m", "pose_train_py27", "infer", "dope", weights, "--images",
                               frames, "--outf", os.path.join(workdir, "legacy")])
    mine, legacy = (json.load(open(os.path.join(workdir, side, "detections.json")))
                    for side in ("modern", "legacy"))
    assert legacy["runtime"]["python"].startswith("2.7") and legacy["runtime"]["torch"] == "1.4.0"
    assert [f["name"] for f in legacy["frames"]] == [f["name"] for f in mine["frames"]] \
        == ["000000", "000001", "000002"]
    assert legacy["settings"] == mine["settings"] and legacy["dimensions_cm"] == DIMS_CM
    for a, b in zip(mine["frames"], legacy["frames"]):
        assert a["network_input"] == b["network_input"] == [170, 128]
        assert_same_detections(a["objects"], b["objects"])
        assert os.path.isfile(os.path.join(workdir, "legacy", b["name"] + ".png"))


def check_multi_infer_parity(python_argv, workdir):
    """infer dope with two networks (cube, mug) in both runtimes: the same record of both."""
    weights = [write_weights(os.path.join(workdir, name), seed, name)
               for seed, name in enumerate(("cube", "mug"))]
    frames = os.path.join(workdir, "frames")
    synth_frames(frames, 2)
    assert local_cli("infer", "dope", *weights, "--images", frames, "--outf",
                     os.path.join(workdir, "modern"), "--partial") == 0
    h.run_legacy(python_argv, ["-m", "pose_train_py27", "infer", "dope"] + weights + [
        "--images", frames, "--outf", os.path.join(workdir, "legacy"), "--partial"])
    mine, legacy = (json.load(open(os.path.join(workdir, side, "detections.json")))
                    for side in ("modern", "legacy"))
    assert legacy["runtime"]["torch"] == "1.4.0" and "object" not in legacy
    assert [n["object"] for n in legacy["networks"]] == [n["object"] for n in mine["networks"]] \
        == ["cube", "mug"]
    for a, b in zip(mine["frames"], legacy["frames"]):
        assert [t["object"] for t in b["per_network"]] == ["cube", "mug"]
        assert_same_detections(a["objects"], b["objects"])
        assert [o["class"] for o in a["objects"]] == [o["class"] for o in b["objects"]]


CHECKS = [check_decode_parity, check_infer_parity, check_multi_infer_parity]


def corrupt_jpeg(png, zeros=300):
    """Replace ``png`` by a JPEG that is complete but corrupt inside (``zeros`` zero bytes at
    30%, where libjpeg notices); returns its path. Only decoding finds it."""
    import cv2
    jpg = png.with_suffix(".jpg")
    cv2.imwrite(str(jpg), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    png.unlink()
    data = bytearray(jpg.read_bytes())
    middle = len(data) * 3 // 10
    data[middle:middle + zeros] = b"\x00" * zeros
    jpg.write_bytes(bytes(data))
    return jpg
