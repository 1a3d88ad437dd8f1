# -*- coding: utf-8 -*-
"""Image files as both runtimes read them: sizes and damage from headers and trailers (no
decoding), the pixel cap, and a decode that refuses what a decoder would pass over.

Every problem is an InputError: one line that names the file and says what to do.
"""
from __future__ import absolute_import, division

import os
import struct
import sys
import tempfile
import zlib

import cv2

from pose_train_py27 import job_fields
from pose_train_py27.errors import InputError

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
