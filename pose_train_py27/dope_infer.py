# -*- coding: utf-8 -*-
"""``infer dope``: DOPE weights + frames -> poses, the same code in both runtimes.

Per frame: scaled to ``downscale_height`` as the node does, normalised as the weights were
trained, the network's last stage decoded by pose_train_py27.dope_decode. Written to OUTF:
  detections.json   the run: settings, weights, runtime versions, every frame's objects and
                    its network / post-processing time;
  NAME.json         per frame, in DOPE's annotation layout (objects[].class, location in m,
                    quaternion_xyzw, projected_cuboid with the centroid last, camera_data);
  NAME.png          the frame with each pose's cuboid, centroid, axes and the peaks used;
  NAME.belief.png   with --belief_grid: the 9 belief maps.
Points are in the pixels of the frame as given (not of the downscaled one).
"""
from __future__ import absolute_import, division, print_function

import json
import os
import platform
import signal
import sys
import threading
import time

import cv2
import numpy as np
import torch

from pose_train_py27 import dope_networks
from pose_train_py27.dope_decode import detect
from pose_train_py27.dope_io import (InputError, camera_beside, camera_from_file,
                                     camera_matrix, check_camera_size, list_inputs, make_camera,
                                     output_folder, OutputClaim, read_frames)
from pose_train_py27.image_files import header_problem, image_size
from pose_train_py27.infer_output import belief_grid, draw_frame, write_json, write_png

def fixed_camera(args):
    """The camera the flags give (used for every frame), or None: then each frame's own."""
    values = [getattr(args, k, None) for k in ("fx", "fy", "cx", "cy")]
    unrectified = getattr(args, "unrectified", False)
    camera = getattr(args, "camera", None)
    if any(v is not None for v in values) and camera:
        raise InputError("--camera %s and --fx --fy --cx --cy are two cameras; give one" % camera)
    if unrectified and not (camera and camera.lower().endswith((".yaml", ".yml"))):
        raise InputError("--unrectified reads K and D from a ROS camera_info YAML; pass it with "
                         "--camera, or drop --unrectified for rectified frames")
    if any(v is not None for v in values):
        if any(v is None for v in values):
            raise InputError("--fx --fy --cx --cy go together; give all four (pixels)")
        return make_camera(*values, source="--fx --fy --cx --cy")
    if camera:
        return camera_from_file(camera, rectified=not unrectified)
    return None


def to_network(rgb, norm, device):
    """ToTensor + Normalize(mean, std), as the node's torchvision transform does."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)
    mean = torch.tensor(norm["mean"]).view(3, 1, 1)
    std = torch.tensor(norm["std"]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).to(device)


def infer_frame(net, device, rgb, cam, dims_cm, settings, norm):
    """(detections, belief maps, timings) for one RGB frame, points in the frame's pixels."""
    height, width = rgb.shape[:2]
    K = camera_matrix(cam)
    scale = float(settings["downscale_height"]) / height
    if scale < 1.0:   # as the node: shrink the frame and the camera together
        K[:2] *= scale
        rgb = cv2.resize(rgb, (int(scale * width), int(scale * height)))
    else:
        scale = 1.0
    start = time.time()
    with torch.no_grad():
        beliefs, affinities = net(to_network(rgb, norm, device))
    belief = beliefs[-1][0].float().cpu().numpy()
    affinity = affinities[-1][0].float().cpu().numpy()
    network_done = time.time()
    detections = detect(belief, affinity, K, dims_cm, settings, cam.get("distortion"))
    post_done = time.time()
    for d in detections:   # back to the pixels of the frame as given
        if d["projected_cuboid"] is not None:
            d["projected_cuboid"] = (np.asarray(d["projected_cuboid"]) / scale).tolist()
        d["points_found"] = [None if p is None else [p[0] / scale, p[1] / scale]
                             for p in d["points_found"]]
    timing = {"network_ms": 1000.0 * (network_done - start),
              "post_ms": 1000.0 * (post_done - network_done),
              "network_input": [int(rgb.shape[1]), int(rgb.shape[0])]}
    return detections, belief, timing


def infer_networks(networks, device, rgb, cam):
    """Every network over one decoded frame: (detections, each labelled with its network's
    object and index, belief maps per network, per-network timings)."""
    detections, beliefs, timings = [], [], []
    for k, n in enumerate(networks):
        dets, belief, timing = infer_frame(n["net"], device, rgb, cam, n["dimensions_cm"],
                                           n["settings"], n["normalization"])
        detections += [dict(d, network=k) for d in dets]
        beliefs.append(belief)
        timings.append(dict(timing, object=n["object"]))
    return detections, beliefs, timings


def frame_annotation(name, cam, size, networks, detections):
    """One frame's result in DOPE's annotation layout (what its tools and our reader read)."""
    objects = [{"class": networks[d["network"]]["object"], "location": d["location"],
                "quaternion_xyzw": d["quaternion_xyzw"], "projected_cuboid": d["projected_cuboid"],
                "score": d["score"], "points_found": d["points_found"], "partial": d["partial"]}
               for d in detections]
    return {"camera_data": {"width": size[0], "height": size[1],
                            "intrinsics": dict((k, cam[k]) for k in ("fx", "fy", "cx", "cy"))},
            "image": name, "objects": objects}


def _unique(name, used):
    candidate, n = name, 2
    while candidate in used:   # frames from two folders may share a name
        candidate, n = "%s_%d" % (name, n), n + 1
    used.add(candidate)
    return candidate


def device_for(args):
    want = getattr(args, "device", None)
    if want is None:
        gpus = getattr(args, "gpus", None)
        want = "cuda" if (gpus is None or gpus > 0) and torch.cuda.is_available() else "cpu"
    return torch.device(want)


def runtime_versions():
    return {"python": platform.python_version(), "torch": torch.__version__,
            "opencv": cv2.__version__, "numpy": np.__version__}


def run(args):
    """Infer every frame with every network; returns the run's record (also written as
    OUTF/detections.json)."""
    if not dope_networks.as_list(getattr(args, "weights", None)):
        raise InputError("infer dope needs WEIGHTS: a DOPE net_epoch_XX.pth, or one per object")
    if not args.images:
        raise InputError("--images: give at least one image, folder of images or video")
    device = device_for(args)
    networks = dope_networks.load_all(args, device)   # wrong networks named before the rest
    for line in dope_networks.node_wide_differences(networks):
        print("pose-train: warning: %s: each runs with its own here; DOPE's node would apply "
              "the first's to every object (see node-config)" % line, file=sys.stderr)
    fixed = fixed_camera(args)
    output_folder(args.outf)
    inputs = _inputs(args)
    _check_before_the_network(inputs, fixed, args.max_pixels)
    with OutputClaim(args.outf, "detections.json", _remove_previous_frames), _StopOnSignal() as stop:
        frames = _infer_frames(args, inputs, fixed, networks, device)
        record = run_record(networks, device, frames, stop.signame)
        try:
            write_json(os.path.join(args.outf, "detections.json"), record)
        except InputError:   # no record naming them: the frames' files go too
            _remove([p for f in frames for p in _frame_files(args.outf, f["name"])])
            raise
    return record


def run_record(networks, device, frames, stopped_by):
    """detections.json: the networks, the runtime and every frame. With one network its facts
    are also at the top level, where one-object readers (and older pose-train) look."""
    record = {"networks": [dope_networks.described(n) for n in networks], "device": str(device),
              "runtime": runtime_versions(), "frames": frames, "stopped_by": stopped_by}
    if len(networks) == 1:
        record.update((k, v) for k, v in record["networks"][0].items() if k != "color")
    return record


class Stopped(Exception):
    """SIGTERM/SIGINT during the frames: finish the record of the frames already written."""


class _StopOnSignal(object):
    """Turns SIGTERM and Ctrl-C into Stopped, so a stopped run still writes detections.json for
    the frames it finished (marked stopped_by) and says so, instead of vanishing silently."""
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signame, self.previous = None, {}

    def _raise(self, signum, frame):
        self.signame = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        for sig, handler in self.previous.items():   # a second signal acts as it used to
            signal.signal(sig, handler)
        raise Stopped(self.signame)

    def __enter__(self):
        if isinstance(threading.current_thread(), threading._MainThread):
            self.previous = dict((sig, signal.signal(sig, self._raise)) for sig in self.SIGNALS)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _inputs(args):
    """The frames of --images, less any inside --outf (a rerun must not read its own overlays)."""
    out_real = os.path.join(os.path.realpath(args.outf), "")
    inputs = [i for i in list_inputs(args.images) if not os.path.realpath(i[0]).startswith(out_real)]
    if not inputs:
        raise InputError("--images %s: every frame there is inside --outf %s (this command's own "
                         "output); pass the folder of camera frames" % (" ".join(args.images), args.outf))
    return inputs


def _check_before_the_network(inputs, fixed, max_pixels):
    """What can be refused from headers, trailers and side files is refused before any frame
    runs, so a bad last frame cannot leave the first ones' outputs behind a failed run."""
    cameras = {}
    for path, is_video in inputs:
        if is_video:
            continue
        problem = header_problem(path, max_pixels) or _too_small(path, image_size(path))
        if problem:
            raise InputError(problem)
        if fixed is None and camera_beside(path, cameras) is None:
            raise InputError("%s: no camera (no JSON with intrinsics beside it); pass --camera "
                             "FILE (DOPE/NViSII JSON or ROS camera_info.yaml) or --fx --fy --cx "
                             "--cy" % path)


MIN_SIDE = 8   # the network's three poolings halve a side three times: below 8 nothing is left


def _too_small(path, size):
    if size is None or min(size[:2]) >= MIN_SIDE:   # image_size adds whether it is complete
        return None
    return ("%s: %dx%d is smaller than the %d x %d pixels DOPE's network takes; pass the "
            "camera's frames at their own size" % (path, size[0], size[1], MIN_SIDE, MIN_SIDE))


def _infer_frames(args, inputs, fixed, networks, device):
    """Infer and write each frame (NAME.json, NAME.png), decoded once for all the networks;
    returns the records of the frames finished, up to a stop signal."""
    frames, used, cameras, written = [], set(), {}, []
    try:
        reading = time.time()
        for name, source, rgb in _progress(read_frames(inputs, args.max_pixels), inputs):
            read_ms = 1000.0 * (time.time() - reading)
            cam = fixed or camera_beside(source, cameras)
            if cam is None:
                raise InputError("%s: no camera (no JSON with intrinsics beside it); pass "
                                 "--camera FILE (DOPE/NViSII JSON or ROS camera_info.yaml) or "
                                 "--fx --fy --cx --cy" % source)
            check_camera_size(cam, source, rgb.shape[1], rgb.shape[0])
            small = _too_small(source, (rgb.shape[1], rgb.shape[0]))
            if small:   # a video's frames are known only once read
                raise InputError(small)
            detections, beliefs, timings = infer_networks(networks, device, rgb, cam)
            name = _unique(name, used)
            size = [int(rgb.shape[1]), int(rgb.shape[0])]
            annotation = frame_annotation(name, cam, size, networks, detections)
            written += _frame_files(args.outf, name)
            write_json(os.path.join(args.outf, name + ".json"), annotation)
            write_png(os.path.join(args.outf, name + ".png"), draw_frame(rgb, cam, networks, detections))
            if args.belief_grid:
                write_png(os.path.join(args.outf, name + ".belief.png"), belief_grid(beliefs, networks))
            frames.append(_frame_record(source, name, size, cam, annotation, timings, read_ms))
            reading = time.time()
    except Stopped:
        pass   # every frame in `frames` is complete on disk; run() records the stop
    except InputError:   # a frame damaged inside (found only by decoding): a refused run
        _remove(written)  # leaves no per-frame files without the detections.json naming them
        raise
    return frames


def _frame_record(source, name, size, cam, annotation, timings, read_ms):
    """A frame in detections.json; network_ms and post_ms are summed over the networks."""
    return {"image": source, "name": name, "size": size, "camera": cam,
            "objects": annotation["objects"], "read_ms": read_ms,
            "network_ms": sum(t["network_ms"] for t in timings),
            "post_ms": sum(t["post_ms"] for t in timings),
            "network_input": timings[0]["network_input"], "per_network": timings}


def _frame_files(outf, name):
    return [os.path.join(outf, name + suffix) for suffix in (".json", ".png", ".belief.png")]


def _remove(paths):
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)


def _remove_previous_frames(outf):
    """The per-frame files the previous run's detections.json names: a rerun on fewer frames
    must not leave them beside its own record. Only names that record lists are touched."""
    try:
        with open(os.path.join(outf, "detections.json")) as f:
            names = [fr["name"] for fr in json.load(f)["frames"]]
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return   # none, or not ours: nothing known to remove
    for name in names:
        if isinstance(name, (str, type(u""))) and os.path.basename(name) == name:
            _remove(_frame_files(outf, name))


def _progress(frames, inputs):
    """A tqdm bar over the frames (on stderr); plain iteration when tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return frames
    total = None if any(is_video for _, is_video in inputs) else len(inputs)
    return tqdm(frames, total=total, unit="frame", desc="infer dope", file=sys.stderr)


def summary(record, outf):
    frames = record["frames"]
    counts = []
    for n in record["networks"]:
        objects = [o for f in frames for o in f["objects"] if o["class"] == n["object"]]
        posed = sum(o["location"] is not None for o in objects)
        counts.append("%s%d detection(s), %d with a pose" % (
            "%s: " % n["object"] if len(record["networks"]) > 1 else "", len(objects), posed))
    net = np.median([f["network_ms"] for f in frames]) if frames else 0.0
    post = np.median([f["post_ms"] for f in frames]) if frames else 0.0
    return ("%d frame(s): %s; median %.1f ms network + %.2f ms post-processing per frame%s (%s, "
            "torch %s); wrote %s" % (len(frames), "; ".join(counts), net, post,
                                     " (%d networks)" % len(record["networks"])
                                     if len(record["networks"]) > 1 else "",
                                     record["device"], record["runtime"]["torch"],
                                     os.path.join(outf, "detections.json")))


def main(args):
    """The job function (a namespace with the INFER_DOPE fields); returns the exit code. Bad
    input raises InputError, printed by the runtime's one boundary (cli.main, __main__)."""
    record = run(args)
    if record["stopped_by"]:
        print("pose-train: infer dope: stopped by %s; only the frames below were done (rerun "
              "the same command for all of them)" % record["stopped_by"], file=sys.stderr)
    print(summary(record, args.outf))
    return 128 + getattr(signal, record["stopped_by"]) if record["stopped_by"] else 0
