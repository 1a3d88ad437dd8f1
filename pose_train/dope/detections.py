"""The detections eval dope scores: from a detections.json of `infer dope` (either runtime,
through the launcher or not), matched to the annotated frames, and the ones the node publishes."""
import os
import sys

import numpy as np

from pose_train.errors import UserError


def as_published(found, partial):
    """The detections the node publishes: partial poses (4-8 points) only with --partial."""
    if partial:
        return found
    return {image: [d for d in dets if not d.get("partial")] for image, dets in found.items()}


def read_detections(path, object_name):
    """({image: detections}, settings) of an infer dope run's ``object_name`` network: the
    run's only one, or the one of that class among several."""
    import json
    try:
        with open(path) as f:
            run = json.load(f)
        found = {os.path.abspath(fr["image"]): fr["objects"] for fr in run["frames"]}
        networks = run.get("networks") or [{"object": run.get("object", object_name),
                                            "settings": run.get("settings")}]
        classes = [str(n["object"]) for n in networks]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError("%s: not a detections.json written by `pose-train infer dope` (%s); "
                        "rerun infer dope" % (path, err))
    mine = [n for n, c in zip(networks, classes) if c.lower() == object_name.lower()]
    if not mine:
        raise UserError("%s holds %s detections, not %r; score them with --object %s, or run "
                        "infer dope with the %s weights" % (
                            path, " and ".join(repr(c) for c in classes), object_name,
                            ",".join(classes), object_name))
    if len(networks) > 1:   # each object's class is its network's
        found = {image: [d for d in dets if str(d.get("class", "")).lower() == object_name.lower()]
                 for image, dets in found.items()}
    for image, dets in found.items():
        for d in dets:
            problem = _unusable_pose(d)
            if problem:
                raise UserError("%s: a detection in %s has %s; rerun infer dope, or fix the file"
                                % (path, image, problem))
    return found, mine[0].get("settings")


def _unusable_pose(d):
    """What makes a posed detection unscorable (NaN, a zero quaternion, a short cuboid), or None."""
    if d.get("location") is None:
        return None
    for key, count in (("location", 3), ("quaternion_xyzw", 4), ("projected_cuboid", 18)):
        try:
            values = np.asarray(d.get(key), np.float64).reshape(count)
        except (TypeError, ValueError):
            return "no %s of %d numbers" % (key, count)
        if not np.isfinite(values).all():
            return "a non-finite %s" % key
        if key == "quaternion_xyzw" and np.linalg.norm(values) < 1e-6:
            return "a zero quaternion_xyzw"
    return None


def detections_per_sample(samples, found, source):
    """Each sample's detections from a detections.json: by absolute path, else by the longest
    path ending that names one frame only (a file the launcher wrote records container paths,
    /host/...). Refuses a file that holds none of these frames; warns when some are missing."""
    index = {}
    for path in found:
        parts = os.path.normpath(path).split(os.sep)
        for k in range(1, min(4, len(parts)) + 1):
            index.setdefault(tuple(parts[-k:]), []).append(path)
    out, unmatched = {}, []
    for s in samples:
        key = os.path.abspath(s.image)
        parts = os.path.normpath(key).split(os.sep)
        hits = [index.get(tuple(parts[-k:]), []) for k in range(min(4, len(parts)), 0, -1)]
        match = key if key in found else next((h[0] for h in hits if len(h) == 1), None)
        if match is None:
            unmatched.append(s.image)
        out[key] = found.get(match, [])
    if samples and len(unmatched) == len(samples):
        raise UserError("%s: none of its %d frames is one of the %d frames of --data (it records e.g. "
                        "%s); run infer dope on these frames, or eval against the data it was run on"
                        % (source, len(found), len(samples), next(iter(found), "no frame")))
    if unmatched:
        print("pose-train: warning: %d of %d frames have no record in %s (e.g. %s); they count as "
              "missed" % (len(unmatched), len(samples), source, unmatched[0]), file=sys.stderr)
    return out
