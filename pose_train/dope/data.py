"""DOPE datasets: find image/json pairs, read both annotation dialects, report bad data.

Dialects (detected per file, so mixed folders work):
  NViSII (current DOPE): ``camera_data.intrinsics`` and ``objects[].projected_cuboid`` with 9 points
    (8 corners + centroid), ``location`` in metres.
  NDDS / FAT (older): 8-point ``projected_cuboid`` + ``projected_cuboid_centroid``; intrinsics in a
    ``_camera_settings.json`` and cuboid sizes in ``_object_settings.json`` in the same folder or a
    parent; ``location`` in centimetres; class names such as ``003_cracker_box_16k``.

Scanning reads json and image headers only (no pixel decoding), so it stays fast on big sets.
Problems become one report line each (file + reason) instead of exceptions.
"""
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from pose_train.dope import bop, corner_order, isaac_sim
from pose_train.dope.data_report import DataReport
from pose_train.errors import UserError
from pose_train_py27.dope_io import frame_files
from pose_train_py27.image_files import MAX_PIXELS, image_size, png_damage, too_many_pixels

SIDE_FILES = ("_camera_settings.json", "_object_settings.json")


@dataclass
class Sample:
    image: str
    size: tuple                    # (width, height) from the header
    points: np.ndarray             # (objects, 9, 2) float32 pixel coordinates, centroid last
    dialect: str
    intrinsics: dict = None        # fx, fy, cx, cy (None when the dataset does not say)
    locations_m: list = field(default_factory=list)
    dimensions_m: list = field(default_factory=list)   # cuboid x, y, z per object, or None
    quaternions: list = field(default_factory=list)    # quaternion_xyzw per object, or None


def find_images(roots):
    """All RGB images under the roots, recursively, sorted for a stable order; a frame that two
    roots reach (the same folder twice, or through a link) counts once, and that is said."""
    found, seen = [], set()
    for root in roots:
        if os.path.isfile(root):
            raise UserError("--data %s is a file; pass the folder that holds the images and "
                            "their .json files" % root)
        if not os.path.isdir(root):
            raise UserError("--data %s does not exist; pass a folder of images + .json files"
                            % root)
        mine = frame_files(root)
        new = [p for p in mine if os.path.realpath(p) not in seen]
        if len(new) < len(mine):
            print("pose-train: warning: --data %s: %d of its %d frames are already under another "
                  "--data; each counts once" % (root, len(mine) - len(new), len(mine)), file=sys.stderr)
        seen.update(os.path.realpath(p) for p in new)
        found += new
    _refuse_shared_annotations(found)
    return sorted(found)


def _refuse_shared_annotations(images):
    """NAME.png and NAME.jpg would both be paired with NAME.json: refuse, naming both."""
    by_stem = {}
    for path in images:
        by_stem.setdefault(os.path.splitext(path)[0], []).append(path)
    for stem, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            raise UserError("%s: %s share one annotation, %s.json; keep one of them (DOPE pairs each "
                            "NAME.json with one image)" % (os.path.dirname(stem) or ".", " and ".join(
                                os.path.basename(p) for p in sorted(paths)), os.path.basename(stem)))


def _side_file(folder, name, root, cache):
    """Nearest ``name`` in ``folder`` or a parent up to ``root`` (NDDS writes one per scene)."""
    key = (folder, name)
    if key not in cache:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8-sig") as f:
                cache[key] = json.load(f)
        elif os.path.abspath(folder) != os.path.abspath(root) and os.path.dirname(folder) != folder:
            cache[key] = _side_file(os.path.dirname(folder), name, root, cache)
        else:
            cache[key] = None
    return cache[key]


def _points(obj):
    """9x2 keypoints (centroid last) from either dialect, or a reason string."""
    pts = obj.get("projected_cuboid")
    if not isinstance(pts, list):
        return "object has no projected_cuboid"
    if len(pts) == 8:
        centroid = obj.get("projected_cuboid_centroid")
        if centroid is None:
            return "8-point projected_cuboid without projected_cuboid_centroid"
        pts = list(pts) + [centroid]
    try:
        arr = np.asarray(pts, dtype=np.float32).reshape(9, 2)
    except (ValueError, TypeError):
        return "projected_cuboid is not 9 (or 8 + centroid) points of 2 numbers"
    if not np.isfinite(arr).all():
        return "projected_cuboid has non-finite values"
    return arr


def _intrinsics(ann, folder, root, cache):
    cam = ann.get("camera_data") or {}
    if isinstance(cam.get("intrinsics"), dict):
        return (ann.get("dialect", "nvisii"),   # isaac-sim: read by pose_train.dope.isaac_sim
                {k: float(cam["intrinsics"][k]) for k in ("fx", "fy", "cx", "cy")})
    settings = _side_file(folder, "_camera_settings.json", root, cache)
    if settings and settings.get("camera_settings"):
        intr = settings["camera_settings"][0].get("intrinsic_settings", {})
        return "ndds", {k: float(intr[k]) for k in ("fx", "fy", "cx", "cy") if k in intr}
    return "ndds", None


def _read_annotation(image_path, report):
    stem = os.path.splitext(image_path)[0]
    json_path = stem + ".json"
    if not os.path.isfile(json_path):
        report.add("without json", image_path, "no annotation file %s (image skipped)"
                   % os.path.basename(json_path))
        return None
    try:
        with open(json_path, encoding="utf-8-sig") as f:   # Windows tools write a BOM
            ann = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        report.add("malformed json", json_path, "malformed json (%s); image skipped" % err)
        return None
    if not isinstance(ann, dict) or not isinstance(ann.get("objects"), list):
        report.add("malformed json", json_path, "no 'objects' list; image skipped")
        return None
    if isaac_sim.is_isaac_sim(ann) and not isaac_sim.to_dope(
            ann, lambda why: report.add("malformed json", json_path, why)):
        return None
    return ann


def _check_image(image_path, imagesize, report, max_pixels):
    header = image_size(image_path)
    if header is None:
        report.add("unreadable image", image_path, "not a readable PNG/JPEG (skipped)")
        return None
    w, h, complete = header
    if not complete:
        report.add("truncated image", image_path, "file is truncated (skipped)")
        return None
    large = too_many_pixels(image_path, max_pixels)
    if large:
        report.add("too large", image_path, "%s (skipped)" % large)
        return None
    damage = png_damage(image_path)
    if damage:   # decoders train on such a file as a black frame and say nothing
        report.add("damaged image", image_path, "damaged PNG: %s (skipped)" % damage)
        return None
    if min(w, h) < imagesize:
        report.add("smaller than crop", image_path, "image %dx%d is smaller than the %d px crop "
                   "(kept: it is upscaled)" % (w, h, imagesize))
    return w, h


def _matching_points(ann, object_name, image_path, w, h, report, classes_seen):
    """Keypoints of the objects of our class; reasons for everything dropped go to the report."""
    wanted = object_name.lower()
    points, locations, dims, quats = [], [], [], []
    for obj in ann["objects"]:
        cls = str(obj.get("class", ""))
        classes_seen[cls] = classes_seen.get(cls, 0) + 1
        if cls.lower() != wanted:
            continue
        if float(obj.get("visibility", 1.0)) <= 0.0:
            continue   # fully occluded: DOPE gives it no maps either
        pts = _points(obj)
        if isinstance(pts, str):
            report.add("bad object", image_path, "%s object in %s: %s (object skipped)"
                       % (cls, _json_name(image_path), pts))
            continue
        outside = int(((pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)).sum())
        if outside:
            report.add("keypoints outside", image_path, "%d of 9 %s keypoints outside the %dx%d "
                       "image (kept: their maps stay empty)" % (outside, cls, w, h))
        points.append(pts)
        location, size, quat = _pose_numbers(obj, cls, image_path, report)
        locations.append(location)
        dims.append(size)
        quats.append(quat)
    return points, locations, dims, quats


def _json_name(image_path):
    """The annotation a frame's problem is in (the report names the frame, the value is here)."""
    return os.path.basename(os.path.splitext(image_path)[0] + ".json")


def _numbers(value, count):
    """``value`` as ``count`` finite floats, or None."""
    try:
        arr = np.asarray(value, np.float64).reshape(count)
    except (TypeError, ValueError):
        return None
    return [float(v) for v in arr] if np.isfinite(arr).all() else None


def _pose_numbers(obj, cls, image_path, report):
    """The object's location, cuboid size and quaternion, each None when absent or unusable
    (NaN, inf, a zero quaternion, a size <= 0), with the reason in the report: the keypoints
    still train, but no metric or sidecar takes those numbers."""
    out = []
    for key, count in (("location", 3), ("cuboid_dimensions", 3), ("quaternion_xyzw", 4)):
        if obj.get(key) is None:
            out.append(None)
            continue
        value = _numbers(obj[key], count)
        if value is not None and key == "quaternion_xyzw" and np.linalg.norm(value) < 1e-6:
            value = None
        if value is not None and key == "cuboid_dimensions" and min(value) <= 0:
            value = None
        if value is None:
            report.add("bad pose", image_path, "%s object in %s: %s is not %d finite numbers%s "
                       "(ignored; its keypoints are kept)" % (cls, _json_name(image_path), key, count,
                                                              ", not all zero" if count == 4 else ""))
        out.append(value)
    return out


def scan(roots, object_name, imagesize, strict=False, max_pixels=MAX_PIXELS, report_to=None):
    """Index the datasets under ``roots`` for one object class. Returns (samples, report).

    Raises UserError when nothing matches ``object_name`` (listing the classes that exist), or,
    with ``strict``, when anything was reported; the report is written to ``report_to`` (if
    given) first, so a refused data set still says what is wrong with each file.
    """
    try:
        return _scan(roots, object_name, imagesize, strict, max_pixels)
    except _Refused as refused:
        if report_to:
            refused.report.write(report_to, 0)
            raise UserError("%s (data report: %s)" % (refused.message, report_to))
        raise UserError(refused.message)


class _Refused(Exception):
    def __init__(self, message, report):
        super().__init__(message)
        self.message, self.report = message, report


def _scan(roots, object_name, imagesize, strict, max_pixels):
    report, classes_seen, cache, samples = DataReport(), {}, {}, []
    bop_roots = [r for r in roots if bop.is_bop(r)]
    for root in bop_roots:
        if len(roots) > 1 and not bop.has_object(root, object_name):
            samples += _bop_negatives(root, imagesize, max_pixels, report)
            continue
        samples += _bop_samples(root, object_name, imagesize, max_pixels, report, classes_seen)
    plain = [r for r in roots if r not in bop_roots]
    images = find_images(plain) if plain else []
    if not images and not samples:
        raise UserError("no .png/.jpg images under %s; pass folders that hold images + json"
                        % ", ".join(roots))
    for image_path in images:
        root = next((r for r in roots if os.path.abspath(image_path).startswith(
            os.path.abspath(r))), roots[0])
        ann = _read_annotation(image_path, report)
        if ann is None:
            continue
        header = _check_image(image_path, imagesize, report, max_pixels)
        if header is None:
            continue
        w, h = header
        points, locations, dims, quats = _matching_points(ann, object_name, image_path, w, h, report,
                                                   classes_seen)
        if not points:
            present = sorted({str(o.get("class", "")) for o in ann["objects"]})
            why = ("its %r objects are fully occluded (visibility 0) or unusable" % object_name
                   if object_name.lower() in {c.lower() for c in present} else
                   "no %r object (classes here: %s)" % (object_name, ", ".join(present) or "none"))
            report.add("no object", image_path, "%s; kept as a negative: its maps are empty" % why)
        dialect, intr = _intrinsics(ann, os.path.dirname(image_path), root, cache)
        if dialect == "nvisii":
            points = corner_order.check_frame(points, locations, dims, quats, intr, image_path, report)
        arr = np.stack(points) if points else np.zeros((0, 9, 2), np.float32)
        if dialect == "ndds":   # NDDS/FAT locations are centimetres, sizes in _object_settings
            locations = [None if l is None else [v / 100.0 for v in l] for l in locations]
            size = _ndds_sizes(os.path.dirname(image_path), root, cache).get(object_name.lower())
            dims = [size] * len(points)
        samples.append(Sample(image_path, (w, h), arr, dialect, intr, locations, dims, quats))
    if not any(len(s.points) for s in samples):
        listing = ", ".join("%s (%d)" % kv for kv in sorted(classes_seen.items())) or "none"
        present = sum(n for cls, n in classes_seen.items() if cls.lower() == object_name.lower())
        problems = [line for line, kind in zip(report.lines, report.kinds) if kind in ("bad object", "bad pose")]
        if present:   # the class is there, but no object of it can be learnt from
            raise _Refused("%d %r objects in %s, none usable: %s; fix those annotations"
                           % (present, object_name, ", ".join(roots), problems[0] if problems else
                              "every one has visibility 0 (fully occluded)"), report)
        raise _Refused("no annotation of class %r in %s (matching ignores case); classes "
                       "found: %s" % (object_name, ", ".join(roots), listing), report)
    _say_empty_folders(roots, samples, object_name)
    _refuse_mixed_orders(report, strict)
    problems = [l for l, k in zip(report.lines, report.kinds) if k != "corners reordered"]
    if strict and problems:   # a set in one known order is put right, not a problem
        raise _Refused("--strict: %d data problems, first: %s" % (len(problems), problems[0]), report)
    return samples, report


def _bop_samples(root, object_name, imagesize, max_pixels, report, classes_seen):
    """A BOP dataset's frames of the object, their cuboids made from its model (dope.bop)."""
    out = []
    for image_path, intrinsics, objects, problems in bop.frames(root, object_name):
        for line in problems:
            report.add("bad pose", image_path, line)
        header = _check_image(image_path, imagesize, report, max_pixels) if objects else None
        if header is None:
            continue
        w, h = header
        points, locations, dims, quats = _matching_points(
            {"objects": objects}, objects[0]["class"], image_path, w, h, report, classes_seen)
        if points:
            out.append(Sample(image_path, (w, h), np.stack(points), "bop", intrinsics, locations,
                              dims, quats))
        elif objects:
            report.add("no object", image_path, "every %s in it has visib_fract 0 (fully "
                       "occluded; frame skipped)" % objects[0]["class"])
    if not out:
        raise UserError("--data %s: no frame shows object %s (every annotation of it is fully "
                        "occluded, impossible, or absent); check its scene_gt.json and "
                        "scene_gt_info.json" % (root, object_name))
    return out


def _bop_negatives(root, imagesize, max_pixels, report):
    """A BOP set whose models_info.json lacks the object, beside other --data: its frames
    train with empty maps (said by _say_empty_folders), as a NViSII folder without it does."""
    out = []
    for image_path, intrinsics in bop.every_frame(root):
        header = _check_image(image_path, imagesize, report, max_pixels)
        if header is not None:
            out.append(Sample(image_path, header, np.zeros((0, 9, 2), np.float32), "bop",
                              intrinsics, [], [], []))
    return out


def _say_empty_folders(roots, samples, object_name):
    """A --data folder without one object of the class trains as negatives only: said, since
    the class may be named otherwise there (BOP's obj_000001 beside a NViSII 'cube')."""
    for root in roots if len(roots) > 1 else ():
        prefix = os.path.join(os.path.abspath(root), "")
        mine = [s for s in samples if os.path.abspath(s.image).startswith(prefix)]
        if mine and not any(len(s.points) for s in mine):
            print("pose-train: warning: --data %s holds no %r object: its %d frames train as "
                  "negatives (empty maps)" % (root, object_name, len(mine)), file=sys.stderr)


def _refuse_mixed_orders(report, strict):
    """--strict: one dataset, one corner order, and every checked object on its own pose."""
    named = sorted(k for k in report.orders if k in corner_order.ORDERS)   # the rest are problems
    if strict and len(named) > 1:
        raise _Refused("--strict: the data mixes corner orders (%s); regenerate it with one "
                       "generator version, or drop --strict to have each put right on read"
                       % ", ".join("%s %d" % (k, report.orders[k]) for k in named), report)


def _ndds_sizes(folder, root, cache):
    settings = _side_file(folder, "_object_settings.json", root, cache) or {}
    return {str(o["class"]).lower(): [v / 100.0 for v in o["cuboid_dimensions"]]
            for o in settings.get("exported_objects", []) if "cuboid_dimensions" in o}


def dimensions_of(samples):
    """The object's cuboid size in metres (median over every annotation that gives one), or
    None when the data never says: what the ROS node's ``dimensions`` are made from."""
    known = [d for s in samples for d in s.dimensions_m
             if isinstance(d, (list, tuple)) and len(d) == 3]
    return [float(v) for v in np.median(np.asarray(known, np.float64), axis=0)] if known else None


def object_settings(folder, root=None):
    """Cuboid sizes in metres by lower-cased class from an NDDS ``_object_settings.json``."""
    return _ndds_sizes(folder, root or folder, {})
