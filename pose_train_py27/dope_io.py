# -*- coding: utf-8 -*-
"""What DOPE inference reads, in either runtime: frames, the camera, the cuboid's size.

Every problem is an InputError: one line that names the file and says what to do.
"""
from __future__ import absolute_import, division

import io
import json
import os

import cv2
import numpy as np

from pose_train_py27.errors import InputError
from pose_train_py27.image_files import MAX_PIXELS, decode_checked

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Auxiliary renders written beside the RGB image by NDDS / NViSII: not frames to run on.
AUX_SUFFIXES = (".depth", ".seg", ".cs", ".is", ".normals", ".flow")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What the network is fed, RGB in [0, 1] -> (x - mean) / std. "ros" is what DOPE's ROS 1 nodes
# feed (and Isaac ROS DOPE's encoder before 3.2); "imagenet" is what DOPE's own trainer, its
# inference.py and Isaac ROS >= 3.2's encoder use (export onnx adapts to the latter).
NORMALIZATIONS = {
    "ros": {"name": "ros", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "note": "RGB in [0,1], (x - 0.5) / 0.5: what DOPE's ROS 1 node feeds "
                    "(and Isaac ROS before 3.2)"},
    "imagenet": {"name": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                 "note": "RGB in [0,1], (x - mean) / std: DOPE's trainer and Isaac ROS >= 3.2's "
                         "encoder; DOPE's ROS 1 node feeds 0.5/0.5 instead"},
}
CAMERA_FILES = ("_camera_settings.json",)




def output_folder(path, flag="--outf", shown=None):
    """Refuse an output folder in one line before any work is done: a file, or a folder (or,
    when it is missing, the folder it would be made in) this user cannot write to. Nothing is
    made here, so a refused run leaves no empty folder behind. ``shown``: what the user typed,
    when ``path`` is the folder of a file they named."""
    named = shown or path
    if shown is None and os.path.exists(path) and not os.path.isdir(path):
        raise InputError("%s %s is a file; pass a folder (it is made if missing)" % (flag, path))
    existing = os.path.abspath(path)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise InputError("%s %s: %s is a file, so it cannot be made there; pass another "
                             "path" % (flag, named, existing))
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("%s %s: %s is not writable by this user; pass a path you can write to"
                         % (flag, named, existing))
    return path


class OutputClaim(object):
    """One run at a time in an output folder, and no stale record beside new frames: an exclusive
    lock on OUTF/.pose-train.lock (the kernel releases it when the process ends, even killed; it
    holds across containers sharing the folder), then the previous run's ``records`` are removed,
    so they reappear only when this run has finished every frame. A run that fails before writing
    anything removes the folder it made."""
    LOCK = ".pose-train.lock"

    def __init__(self, outf, records=(), before_removal=None):
        self.outf, self.lock, self.made = outf, None, False
        self.records = (records,) if isinstance(records, str) else tuple(records)
        self.before_removal = before_removal   # f(outf), under the lock: what the records name

    def __enter__(self):
        import fcntl
        try:   # a place the kernel refuses (/proc, a read-only mount) passes os.access as root
            if not os.path.isdir(self.outf):
                os.makedirs(self.outf)
                self.made = True
            self.lock = open(os.path.join(self.outf, self.LOCK), "a")
        except (IOError, OSError) as err:
            raise InputError("--outf %s: cannot make or write the output folder there (%s); pass "
                             "another folder" % (self.outf, err.strerror or err))
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            self.lock.close()
            raise InputError("--outf %s is in use by another pose-train run; wait for it to end or pass "
                             "another --outf" % self.outf)
        if self.before_removal is not None:
            self.before_removal(self.outf)
        for record in self.records:
            stale = os.path.join(self.outf, record)
            if os.path.exists(stale):
                os.remove(stale)
        return self

    def __exit__(self, kind, value, trace):
        self.lock.close()
        if kind is not None and self.made and os.listdir(self.outf) == [self.LOCK]:
            os.remove(os.path.join(self.outf, self.LOCK))
            os.rmdir(self.outf)
        return False


def is_frame_file(name):
    stem, ext = os.path.splitext(name)
    return ext.lower() in IMAGE_EXTS and not stem.lower().endswith(AUX_SUFFIXES)


def frame_files(root):
    """Frame files under ``root``, recursively, sorted. Links are followed, but never into a
    folder already walked (a link to an ancestor would repeat it forever), and each real file
    counts once. A link to nothing is refused by name."""
    walked, files, out = set(), set(), []
    for folder, dirnames, names in os.walk(root, followlinks=True):
        walked.add(os.path.realpath(folder))
        dirnames[:] = sorted(d for d in dirnames
                             if os.path.realpath(os.path.join(folder, d)) not in walked)
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not is_frame_file(name):
                continue
            if not os.path.exists(path):
                raise InputError("%s: a link to %s, which does not exist; remove the link or restore "
                                 "its target" % (path, os.readlink(path)))
            real = os.path.realpath(path)
            if real not in files:
                files.add(real)
                out.append(path)
    return sorted(out)


def list_inputs(paths):
    """[(path, is_video)] for image files, folders (searched recursively, sorted) and videos."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            inside = frame_files(path)
            if not inside:
                raise InputError("%s: no .png/.jpg frames in this folder; pass a folder of "
                                 "images, image files or a video" % path)
            found += [(p, False) for p in sorted(inside)]
        elif os.path.isfile(path):
            ext = os.path.splitext(path)[1].lower()
            if ext not in IMAGE_EXTS + VIDEO_EXTS:
                raise InputError("%s: not an image (%s) or a video (%s); pass those only"
                                 % (path, "/".join(IMAGE_EXTS), "/".join(VIDEO_EXTS)))
            found.append((path, ext in VIDEO_EXTS))
        else:
            raise InputError("%s: no such file or folder; check the path" % path)
    return found


def read_frames(inputs, max_pixels=MAX_PIXELS):
    """Yield (name, source path, RGB uint8 frame) for every frame; video frames are named
    ``VIDEO_STEM_000123``."""
    for path, is_video in inputs:
        if not is_video:
            bgr = decode_checked(path, max_pixels)
            yield os.path.splitext(os.path.basename(path))[0], path, bgr[:, :, ::-1].copy()
            continue
        capture = cv2.VideoCapture(path)
        ok, bgr = capture.read()
        if not ok:
            raise InputError("%s: OpenCV cannot read frames from this video; re-encode it "
                             "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or pass images" % path)
        stem, index = os.path.splitext(os.path.basename(path))[0], 0
        while ok:
            yield "%s_%06d" % (stem, index), path, bgr[:, :, ::-1].copy()
            ok, bgr = capture.read()
            index += 1
        capture.release()


def _load_json(path):
    try:
        with io.open(path, encoding="utf-8-sig") as f:   # a BOM (Windows tools) is not JSON
            return json.load(f)
    except ValueError as err:
        raise InputError("%s: not valid JSON (%s); fix or replace it" % (path, err))
    except (IOError, OSError) as err:
        raise InputError("%s: cannot read it (%s)" % (path, err))


def make_camera(fx, fy, cx, cy, width=None, height=None, source=""):
    for name, value in (("width", width), ("height", height)):
        # int() would make 96.7 a silent 96: a camera file with that is a typo or a resize
        if value is not None and (isinstance(value, bool) or float(value) != int(float(value))):
            raise InputError("%s: the camera's image %s %r is not a whole number of pixels; fix "
                             "the file" % (source or "camera", name, value))
        # A zero size read as "unknown" let a camera of another size pose frames silently.
        if value is not None and float(value) <= 0:
            raise InputError("%s gives image %s %r: write the size the camera was calibrated at "
                             "into the file" % (source or "camera", name, value))
    cam = {"fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy),
           "width": None if width is None else int(float(width)),
           "height": None if height is None else int(float(height)), "source": source}
    if not all(np.isfinite([cam["fx"], cam["fy"], cam["cx"], cam["cy"]])):
        raise InputError("%s: the camera's fx, fy, cx and cy must be finite numbers (got %s); fix "
                         "the camera" % (source or "camera", ", ".join(
                             "%s=%r" % (k, cam[k]) for k in ("fx", "fy", "cx", "cy"))))
    if not (cam["fx"] > 0 and cam["fy"] > 0):
        raise InputError("%s: the camera's fx and fy must be positive; fix the file" % source)
    return cam


def camera_from_json(data, path):
    """NViSII / DOPE frame JSON (camera_data.intrinsics) or NDDS _camera_settings.json; None
    when the JSON has no camera."""
    try:
        cam = data.get("camera_data") or {}
        if isinstance(cam.get("intrinsics"), dict):
            i = cam["intrinsics"]
            return make_camera(i["fx"], i["fy"], i["cx"], i["cy"], cam.get("width"),
                           cam.get("height"), path)
        if data.get("camera_settings"):
            s = data["camera_settings"][0]
            i, size = s["intrinsic_settings"], s.get("captured_image_size") or {}
            return make_camera(i["fx"], i["fy"], i["cx"], i["cy"], size.get("width"),
                           size.get("height"), path)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError("%s: camera intrinsics incomplete (%s missing or not a number); "
                         "fix the file or pass --fx --fy --cx --cy" % (path, err))
    return None


def _matrix(info, *keys):
    """The first of ``keys`` in a camera_info YAML: {data: [...]} (calibration files) or a flat
    list (a dumped CameraInfo message), as floats; None when absent."""
    for key in keys:
        value = info.get(key)
        if isinstance(value, dict):
            value = value.get("data")
        if value is not None:
            return [float(v) for v in value]
    return None


def _first(info, *keys):
    """The value of the first of ``keys`` present (a 0 there is the file's, not a missing key)."""
    for key in keys:
        if info.get(key) is not None:
            return info[key]
    return None


def camera_from_yaml(path, rectified=True):
    """A ROS camera_info YAML (camera_calibration's ost.yaml / the node's camera_info), read as
    DOPE's node reads it: with ``input_is_rectified: true`` (its default) the projection
    matrix P (the rectified camera), else K, with the distortion D given to PnP."""
    import yaml
    try:
        with open(path) as f:
            info = yaml.safe_load(f)
        p = _matrix(info, "projection_matrix", "P", "p") if rectified else None
        k = [p[0], p[1], p[2], p[4], p[5], p[6]] if p else _matrix(info, "camera_matrix", "K", "k")[:6]
        cam = make_camera(k[0], k[4], k[2], k[5], _first(info, "image_width", "width"),
                          _first(info, "image_height", "height"), path)
    except (IOError, OSError) as err:
        raise InputError("%s: cannot read it (%s)" % (path, err))
    except (yaml.YAMLError, AttributeError, TypeError, ValueError, IndexError):
        raise InputError("%s: not a ROS camera_info YAML (needs camera_matrix.data with 9 finite "
                         "numbers, or projection_matrix.data with 12); fix it or pass --fx --fy "
                         "--cx --cy" % path)
    if rectified and not p:
        import sys
        sys.stderr.write("pose-train: warning: %s has no projection_matrix (P), which DOPE's node "
                         "poses with for rectified frames; K is used instead\n" % path)
    if not rectified:
        cam["distortion"] = _distortion(info, path)
    return cam


def _distortion(info, path):
    """D for PnP, as the node passes it (OpenCV's plumb_bob / rational polynomial models)."""
    model = str(info.get("distortion_model") or "plumb_bob")
    if model not in ("plumb_bob", "rational_polynomial"):
        raise InputError("%s: distortion_model %s is not one OpenCV's PnP applies (plumb_bob, "
                         "rational_polynomial); rectify the frames and drop --unrectified" % (path, model))
    try:
        d = _matrix(info, "distortion_coefficients", "D", "d") or []
    except (TypeError, ValueError):
        d = None
    if d is None or not np.isfinite(d).all():
        raise InputError("%s: distortion_coefficients must be finite numbers; fix the file" % path)
    return d


def camera_from_file(path, rectified=True):
    if path.lower().endswith((".yaml", ".yml")):
        return camera_from_yaml(path, rectified)
    cam = camera_from_json(_load_json(path), path)
    if cam is None:
        raise InputError("%s: has no camera intrinsics (camera_data.intrinsics or "
                         "camera_settings); pass a camera file or --fx --fy --cx --cy" % path)
    return cam


def camera_beside(image_path, cache):
    """The camera a dataset gives its frame: the frame's own JSON, else the nearest
    _camera_settings.json in its folder or a parent (NDDS writes one per scene)."""
    own = os.path.splitext(image_path)[0] + ".json"
    if os.path.isfile(own):
        cam = camera_from_json(_load_json(own), own)
        if cam is not None:
            return cam
    folder = os.path.dirname(os.path.abspath(image_path))
    for _ in range(3):
        for name in CAMERA_FILES:
            path = os.path.join(folder, name)
            if path not in cache and os.path.isfile(path):
                cache[path] = camera_from_file(path)
            if path in cache:
                return cache[path]
        folder = os.path.dirname(folder)
    return None


def check_camera_size(cam, frame_path, width, height):
    if cam["width"] and cam["height"] and (cam["width"], cam["height"]) != (width, height):
        raise InputError("%s: the camera (%s) is for %dx%d frames but this one is %dx%d; pass "
                         "the camera of this image size, or scale fx, fy, cx, cy by the resize"
                         % (frame_path, cam["source"], cam["width"], cam["height"], width, height))


def camera_matrix(cam):
    return np.array([[cam["fx"], 0.0, cam["cx"]], [0.0, cam["fy"], cam["cy"]], [0.0, 0.0, 1.0]])


def parse_dimensions(text):
    """``10,8,6`` (cm, as DOPE's node takes them) -> [10.0, 8.0, 6.0]; InputError otherwise."""
    try:
        dims = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        dims = []
    if len(dims) != 3 or not all(0 < d < float("inf") for d in dims):
        raise InputError("--dimensions takes the cuboid's x,y,z in cm, e.g. 10,8,6, or an NDDS "
                         "_object_settings.json; got %r" % (text,))
    return dims


def dimensions_from_settings(path, object_name):
    """cuboid_dimensions (cm) of ``object_name`` in an NDDS _object_settings.json."""
    data = _load_json(path)
    objects = data.get("exported_objects", []) if isinstance(data, dict) else []
    sizes = dict((str(o.get("class", "")).lower(), o.get("cuboid_dimensions")) for o in objects)
    dims = sizes.get(str(object_name).lower())
    if not dims:
        raise InputError("%s: no cuboid_dimensions for class %r (classes: %s); pass --object or "
                         "--dimensions X,Y,Z in cm" % (path, object_name,
                                                       ", ".join(sorted(sizes)) or "none"))
    return [float(v) for v in dims]
