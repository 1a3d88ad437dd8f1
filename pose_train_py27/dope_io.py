# -*- coding: utf-8 -*-
"""What DOPE inference reads, in either runtime: frames, the camera, the cuboid's size.

Every problem is an InputError: one line that names the file and says what to do.
"""
from __future__ import absolute_import, division

import json
import os
import struct
import sys
import tempfile
import zlib

import cv2
import numpy as np

from pose_train_py27 import job_fields

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Auxiliary renders written beside the RGB image by NDDS / NViSII: not frames to run on.
AUX_SUFFIXES = (".depth", ".seg", ".cs", ".is", ".normals", ".flow")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What the network is fed, RGB in [0, 1] -> (x - mean) / std. "ros" is what every deployment
# target feeds (DOPE's Melodic-era and ros1 nodes, Isaac ROS DOPE's encoder); "imagenet" is
# what DOPE's own trainer and inference.py use.
NORMALIZATIONS = {
    "ros": {"name": "ros", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "note": "RGB in [0,1], (x - 0.5) / 0.5: what DOPE's ROS nodes and Isaac ROS feed"},
    "imagenet": {"name": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                 "note": "RGB in [0,1], (x - mean) / std: DOPE's trainer; its ROS nodes feed "
                         "0.5/0.5 instead"},
}
CAMERA_FILES = ("_camera_settings.json",)


class InputError(Exception):
    """A bad input: printed as one line, exit code 2."""


def output_folder(path, flag="--outf"):
    """Refuse an output folder in one line before any work is done: a file, or a folder (or,
    when it is missing, the folder it would be made in) this user cannot write to. Nothing is
    made here, so a refused run leaves no empty folder behind."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError("%s %s is a file; pass a folder (it is made if missing)" % (flag, path))
    existing = os.path.abspath(path)
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise InputError("%s %s: %s is a file, so the folder cannot be made there; pass another "
                             "folder" % (flag, path, existing))
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("%s %s: %s is not writable by this user; pass a folder you can write to"
                         % (flag, path, existing))
    return path


class OutputClaim(object):
    """One run at a time in an output folder, and no stale record beside new frames: an exclusive
    lock on OUTF/.pose-train.lock (the kernel releases it when the process ends, even killed; it
    holds across containers sharing the folder), then the previous run's ``records`` are removed,
    so they reappear only when this run has finished every frame. A run that fails before writing
    anything removes the folder it made."""
    LOCK = ".pose-train.lock"

    def __init__(self, outf, records=()):
        self.outf, self.lock, self.made = outf, None, False
        self.records = (records,) if isinstance(records, str) else tuple(records)

    def __enter__(self):
        import fcntl
        if not os.path.isdir(self.outf):
            os.makedirs(self.outf)
            self.made = True
        self.lock = open(os.path.join(self.outf, self.LOCK), "a")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            self.lock.close()
            raise InputError("--outf %s is in use by another pose-train run; wait for it to end or pass "
                             "another --outf" % self.outf)
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_damage(path):
    """Why a PNG file is damaged inside (a chunk's CRC, a cut chunk, no IEND), or None.

    libpng only warns on a bad IDAT CRC ("IDAT: CRC error", no file name) and OpenCV then
    returns a partly or wholly black frame, so the check reads the chunks itself: zlib's
    crc32 over each, about 1 ms for a 640x480 frame. Non-PNG files give None.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != PNG_SIGNATURE:
        return None
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if not kind.isalpha():
            return "no PNG chunk at byte %d (the data is overwritten)" % pos
        end = pos + 8 + length
        if end + 4 > len(data):
            return "chunk %s at byte %d is cut short" % (kind.decode("latin-1"), pos)
        crc = struct.unpack(">I", data[end:end + 4])[0]
        if zlib.crc32(data[pos + 4:end]) & 0xFFFFFFFF != crc:
            return "chunk %s at byte %d fails its CRC" % (kind.decode("latin-1"), pos)
        if kind == b"IEND":
            return None
        pos = end + 4
    return "no IEND chunk (the file is cut short)"


def image_size(path):
    """(width, height, complete) from the file header and trailer, without decoding pixels.

    ``complete`` is False when the file is cut short (no PNG IEND chunk / JPEG EOI marker) —
    the common result of an interrupted copy or download. Returns None when unreadable.

    Hand-written on purpose: OpenCV has no header-only read (cv2.imread decodes the pixels, ~7 ms
    for a 640x480 PNG, and scanning must stay fast on big sets), Pillow is not in the images,
    and neither looks at the trailer, which is what finds a truncated file.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
            # The end marker is looked for in the last 64 KiB, not the last bytes: cameras and
            # editors append metadata after it. In JPEG data a 0xFF byte is always stuffed
            # (FF 00), so FF D9 there is a real end-of-image marker.
            f.seek(max(0, os.path.getsize(path) - 64 * 1024))
            tail = f.read()
    except (IOError, OSError):
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return w, h, b"IEND" in tail
    if head[:2] == b"\xff\xd8":
        size = _jpeg_size(head)
        if size is None:
            return None
        return size[0], size[1], b"\xff\xd9" in tail
    return None


def _jpeg_size(data):
    data = bytearray(data)    # indexes to ints in Python 2 too
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", bytes(data[i + 2:i + 4]))[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry height, width.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", bytes(data[i + 5:i + 9]))
            return w, h
        i += 2 + length
    return None


MAX_PIXELS = job_fields.MAX_PIXELS["default"]
CV_MAX_PIXELS = job_fields.MAX_PIXELS["high"]


def too_many_pixels(path, max_pixels=MAX_PIXELS):
    """Why the image at ``path`` is over the cap, from its header alone, or None."""
    size = image_size(path)
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    return ("%dx%d is %d pixels, over the cap of %d; scale it down, or raise the cap with "
            "--max_pixels N (up to %d)" % (size[0], size[1], size[0] * size[1], max_pixels,
                                            CV_MAX_PIXELS))


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


def jpeg_damage(path):
    """Why a JPEG file is cut short (no end-of-image marker after its scan data), or None.
    Bytes after the marker (camera metadata) are fine."""
    if os.path.splitext(path)[1].lower() not in (".jpg", ".jpeg"):
        return None
    with open(path, "rb") as f:
        data = f.read()
    scan = data.find(b"\xff\xda")
    if not data.startswith(b"\xff\xd8"):
        return None   # not a JPEG at all: the decoder says so
    if scan < 0:
        return "no scan marker (no image data)"
    if data.rfind(b"\xff\xd9") < scan:
        return "no end-of-image marker after the image data (the file is cut short)"
    return None


# Keypoints are annotated on the stored pixels and the node gets raw camera images: never apply
# a JPEG's EXIF rotation (PIL, which DOPE uses, does not either).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def header_problem(path, max_pixels=MAX_PIXELS):
    """The line refusing an image file for what shows without decoding it (over the pixel cap,
    a PNG chunk's CRC, a cut JPEG), or None."""
    large = too_many_pixels(path, max_pixels)
    if large:
        return "%s: %s" % (path, large)
    damage = png_damage(path) or jpeg_damage(path)
    if damage:
        return "%s: damaged %s (%s); replace it or leave it out" % (
            path, "PNG" if path.lower().endswith(".png") else "JPEG", damage)
    return None


def decode_checked(path, max_pixels=MAX_PIXELS):
    """cv2.imread of an image file, refusing damage a decoder would pass over: a PNG chunk's CRC,
    a cut JPEG, or libjpeg's 'Corrupt JPEG data' warning (caught from fd 2, where libjpeg writes
    it without the file's name), and an image over the pixel cap. Returns BGR uint8."""
    problem = header_problem(path, max_pixels)
    if problem:
        raise InputError(problem)
    bgr, warning = _imread_catching_stderr(path)
    if "corrupt" in warning.lower() or "premature end" in warning.lower():
        raise InputError("%s: damaged %s (%s); replace it or leave it out" % (
            path, "PNG" if path.lower().endswith(".png") else "JPEG",
            warning.strip().splitlines()[0]))
    if bgr is None:
        raise InputError("%s: cannot decode it as an image (damaged or not a PNG/JPEG); "
                         "replace or remove it" % path)
    return bgr


def _imread_catching_stderr(path):
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            bgr = cv2.imread(path, IMREAD_FLAGS)
        except cv2.error:
            bgr = None    # over OpenCV's own limits: said below as undecodable
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        warning = caught.read().decode("utf-8", "replace")
    if warning and "corrupt" not in warning.lower() and "premature end" not in warning.lower():
        sys.stderr.write(warning)     # not ours to swallow
    return bgr, warning


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
        with open(path) as f:
            return json.load(f)
    except ValueError as err:
        raise InputError("%s: not valid JSON (%s); fix or replace it" % (path, err))
    except (IOError, OSError) as err:
        raise InputError("%s: cannot read it (%s)" % (path, err))


def make_camera(fx, fy, cx, cy, width=None, height=None, source=""):
    cam = {"fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy),
           "width": None if width is None else int(width),
           "height": None if height is None else int(height), "source": source}
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


def camera_from_yaml(path):
    """A ROS camera_info YAML (camera_calibration's ost.yaml / the node's camera_info)."""
    import yaml
    try:
        with open(path) as f:
            info = yaml.safe_load(f)
        k = (info.get("camera_matrix") or {}).get("data") or info.get("K") or info.get("k")
        k = [float(v) for v in k]
        return make_camera(k[0], k[4], k[2], k[5], info.get("image_width") or info.get("width"),
                       info.get("image_height") or info.get("height"), path)
    except (IOError, OSError) as err:
        raise InputError("%s: cannot read it (%s)" % (path, err))
    except (yaml.YAMLError, AttributeError, TypeError, ValueError, IndexError):
        raise InputError("%s: not a ROS camera_info YAML (needs camera_matrix.data with 9 "
                         "numbers); fix it or pass --fx --fy --cx --cy" % path)


def camera_from_file(path):
    if path.lower().endswith((".yaml", ".yml")):
        return camera_from_yaml(path)
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
