"""`pose-train eval dope`: DOPE weights against annotated frames, scored as DOPE's paper does.

Per annotated object: detected or not, the 2D error of the 9 projected points, the translation
and rotation errors, and ADD (mean distance of the model's points under the two poses; the
cuboid's 8 corners, or a mesh with --mesh; ADD-S with --symmetric). Summary: detection rate,
ADD < 0.1 x diameter, and the area under the ADD accuracy curve over 0-10 cm (YCB-Video's
ADD AUC). An undetected object is a miss everywhere. Writes OUTF/results.json,
OUTF/results.md and overlays of the worst frames in OUTF/worst/.

The detections come from the network run here (this runtime), or from a detections.json
of `infer dope` (--detections): that is how --runtime melodic scores the legacy image's poses.
"""
import json
import os
import re
import shutil
import sys

import numpy as np
from tqdm import tqdm

from pose_train.dope import bop
from pose_train.dope.data import dimensions_of, scan
from pose_train.dope.detections import as_published, detections_per_sample, read_detections
from pose_train.dope.eval_outputs import overall, overall_markdown, results_markdown, write_worst
from pose_train import files
from pose_train.errors import UserError
from pose_train.files import atomic_write, atomic_write_json
from pose_train.keypoints import mesh as meshlib
from pose_train.keypoints.metrics import add_error
from pose_train_py27 import dope_infer, dope_networks
from pose_train_py27.cuboid import cuboid_vertices, quat_xyzw_to_matrix, rotation_angle_deg
from pose_train_py27 import dope_io, image_files, sidecar
from pose_train_py27.dope_io import InputError, make_camera

AUC_MAX_M = 0.10
ADD_FRACTION = 0.1
# A detection is the object's only when its projected centroid lies within this fraction of
# the object's size in the image (the diagonal of its projected cuboid's bounding box): about
# two belief-map cells for an object of ten. Anything posed elsewhere is a false positive, as
# BOP and DOPE's evaluation count a detection far from its object.
MATCH_FRACTION = 0.2
MATCH_RULE = ("projected centroid lies within %g x the object's 2D size (its projected cuboid's "
              "bounding-box diagonal)" % MATCH_FRACTION)


def model_points(args, dims_cm, dialect):
    """(points in metres, diameter in metres, what they are)."""
    if not args.mesh:
        pts = cuboid_vertices([d / 100.0 for d in dims_cm])[:8]
        return pts, float(np.linalg.norm(np.asarray(dims_cm)) / 100.0), "cuboid corners"
    # The mesh is in the dataset's units: NDDS centimetres, BOP millimetres, NViSII metres.
    scale = {"ndds": 0.01, "bop": 0.001}.get(dialect, 1.0)
    pts = meshlib.read_vertices(args.mesh) * scale   # every point: ADD(-S) is exact
    if len(pts) == 0 or not np.isfinite(pts).all():
        raise UserError("--mesh %s: %s; give the object's model with its vertices" % (
            args.mesh, "it has no vertices" if len(pts) == 0 else "it has non-finite vertices (NaN or inf)"))
    return pts, meshlib.diameter(pts), "mesh %s" % os.path.basename(args.mesh)


def run_networks(args, targets, device):
    """({object: {image path: posed detections}}, report lines of frames that cannot be
    decoded). Each frame is decoded once and run through every network whose object it holds;
    a damaged frame is refused, or left out under --skip_bad."""
    wanted = {}
    for t in targets:
        for s in t["samples"]:
            wanted.setdefault(os.path.abspath(s.image), (s, []))[1].append(t)
    found, damaged = {t["network"]["object"]: {} for t in targets}, []
    for image, (s, users) in tqdm(wanted.items(), desc="eval dope", unit="frame"):
        if not s.intrinsics or len(s.intrinsics) < 4:
            raise UserError("%s: the dataset gives no camera intrinsics for it; eval needs "
                            "them (camera_data.intrinsics or _camera_settings.json)" % s.image)
        try:   # a frame damaged, or its camera unusable, since the scan
            cam = make_camera(source=s.image, **s.intrinsics)
            bgr = image_files.decode_checked(s.image, args.max_pixels)
        except InputError as err:
            if not args.skip_bad:
                raise UserError("%s, or pass --skip_bad to score the rest" % err)
            damaged.append(str(err))
            continue
        for t in users:   # partial poses too: the figures of both choices are reported
            n = t["network"]
            found[n["object"]][image] = dope_infer.infer_frame(
                n["net"], device, bgr[:, :, ::-1].copy(), cam, n["dimensions_cm"],
                dict(n["settings"], partial=True), n["normalization"])[0]
    return found, damaged


def match_radius(points):
    """The farthest a detection's projected centroid may lie from the truth's (pixels), for an
    object whose 9 projected points are ``points``."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return MATCH_FRACTION * float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))


def _match(gt_points, dets):
    """Greedy by 2D centroid distance: {gt index: detection}; each detection used once, and
    only for an object whose centroid it lies near (match_radius)."""
    pairs = sorted((dist, g, k) for g, pts in enumerate(gt_points) for k, d in enumerate(dets)
                   for dist in [np.linalg.norm(np.subtract(d["projected_cuboid"][8], pts[8]))]
                   if dist <= match_radius(pts))
    used_g, used_k, out = set(), set(), {}
    for _, g, k in pairs:
        if g not in used_g and k not in used_k:
            used_g.add(g)
            used_k.add(k)
            out[g] = dets[k]
    return out


def score_frame(sample, dets, points, symmetric):
    """One row per annotated object of the class in this frame."""
    posed = [d for d in dets if d.get("location") is not None]
    matched = _match(sample.points, posed)
    rows = []
    for g in range(len(sample.points)):
        row = {"image": sample.image, "object": g, "detected": g in matched}
        loc, quat = sample.locations_m[g], sample.quaternions[g]
        if g in matched and loc is not None and quat is not None:
            d = matched[g]
            R, R_hat = quat_xyzw_to_matrix(quat), quat_xyzw_to_matrix(d["quaternion_xyzw"])
            row.update(
                reproj_px=float(np.linalg.norm(np.subtract(d["projected_cuboid"],
                                                           sample.points[g]), axis=1).mean()),
                trans_mm=1000.0 * float(np.linalg.norm(np.subtract(d["location"], loc))),
                rot_deg=rotation_angle_deg(quat, d["quaternion_xyzw"]),
                add_m=add_error(points, R, loc, R_hat, d["location"], symmetric),
                projected_cuboid=d["projected_cuboid"], partial=bool(d.get("partial")))
        rows.append(row)
    return rows, max(0, len(posed) - len(matched))


def summarize(rows, diameter, false_positives):
    adds = np.array([r.get("add_m", np.inf) for r in rows], np.float64)
    thresholds = np.linspace(0.0, AUC_MAX_M, 1001)
    accuracy = [(adds < t).mean() if len(adds) else 0.0 for t in thresholds]
    found = [r for r in rows if "add_m" in r]

    def median(key):
        return float(np.median([r[key] for r in found])) if found else None
    return {"objects": len(rows), "detected": len(found),
            "detection_rate": len(found) / max(1, len(rows)),
            "add_below_0.1d": float((adds < ADD_FRACTION * diameter).mean()) if len(adds) else 0.0,
            "add_auc_0_10cm": float(np.trapezoid(accuracy, thresholds) / AUC_MAX_M),
            "median_reproj_px": median("reproj_px"), "median_trans_mm": median("trans_mm"),
            "median_rot_deg": median("rot_deg"), "false_positives": false_positives,
            "diameter_m": diameter, "match": MATCH_RULE}


# Data-report kinds that leave a frame, or one of its objects, without a score: scoring the
# rest would hide them.
DROPPED = ("without json", "malformed json", "unreadable image", "truncated image", "damaged image",
           "too large", "bad object", "bad pose")
# What the shared scan says it does with a file, in the trainer's terms; eval's own line says
# "cannot be scored" instead.
_TRAINER_OUTCOME = re.compile(r" \((skipped|object skipped|ignored; its keypoints are kept)\)$")


def unscorable(report):
    """{frame path: its first reason} for the frames the report says cannot be scored."""
    out = {}
    for line, kind in zip(report.lines, report.kinds):
        if kind in DROPPED:
            path, reason = line.split(": ", 1)
            out.setdefault(path, _TRAINER_OUTCOME.sub("", reason))
    return out


def refuse_or_skip(problems, skip_bad):
    """``path: reason`` lines of the frames left out under --skip_bad; refused without it."""
    lines = ["%s: %s" % kv for kv in sorted(problems.items())]
    if lines and not skip_bad:
        raise UserError("%d frame(s) cannot be scored, first: %s; repair or remove them, or pass "
                        "--skip_bad to score the rest (results.md then lists them)" % (len(lines), lines[0]))
    return lines


def main(args):
    if args.runtime == "melodic" and not args.detections:
        raise UserError("eval dope --runtime melodic runs infer dope in the legacy image first; "
                        "run it through the launcher (without --local), or pass --detections")
    device = None if args.detections else dope_infer.device_for(args)
    targets = [target(args, n) for n in networks_to_score(args, device)]
    dope_io.output_folder(args.outf)
    # One eval at a time per folder; the old results go first, so none outlives this run.
    with dope_io.OutputClaim(args.outf, ("results.json", "results.md"),
                             lambda outf: _remove_previous_results(outf, targets)):
        if args.detections:
            found, source = detections_of(args, targets), args.detections
        else:
            found, damaged = run_networks(args, targets, device)
            for t in targets:
                t["samples"] = [s for s in t["samples"] if os.path.abspath(s.image) in found[t["object"]]]
                t["skipped"] = sorted(t["skipped"] + damaged)
            source = "this runtime (%s)" % ", ".join(
                "%s %s" % kv for kv in sorted(dope_infer.runtime_versions().items()))
        texts = [score_target(args, t, found[t["object"]], source, len(targets) > 1)
                 for t in targets]
        text = texts[0] if len(targets) == 1 else write_overall(args, targets, texts)
    print(text)
    print("wrote %s" % os.path.join(args.outf, "results.md"))
    return 0


def networks_to_score(args, device):
    """The networks (loaded unless --detections) with the classes they score: --object, else
    each sidecar's, else cube for a lone network (a renamed class is said, not refused)."""
    paths = dope_networks.as_list(args.weights)
    if len(paths) > 1 and args.mesh:
        raise UserError("--mesh is one object's model; eval one network at a time for ADD on "
                        "meshes, or drop --mesh to score each object on its cuboid")
    if len(paths) == 1 and not args.object and not sidecar.read(paths[0]).get("object"):
        args.object = "cube"   # the class synth dope writes
    return dope_networks.load_all(args, device, load=not args.detections)


def target(args, network):
    """What one network is scored on: its class's frames, its cuboid or --mesh, its folder."""
    samples, skipped = scorable_frames(args, network["object"])
    _say_if_the_cuboid_differs(samples, network["dimensions_cm"])
    points, diameter, what = model_points(args, network["dimensions_cm"], samples[0].dialect)
    return {"network": network, "object": network["object"], "samples": samples,
            "skipped": skipped, "points": points, "diameter": diameter, "what": what,
            "symmetric": _symmetric(args, samples, network["object"])}


def _symmetric(args, samples, object_name):
    """ADD-S for this object: --symmetric, or the data marks it symmetric (BOP's models_info,
    or synth dope --symmetry's frames) and --add does not ask for ADD."""
    if args.symmetric and args.add:
        raise UserError("--symmetric asks for ADD-S and --add for ADD; pass one of them")
    if args.symmetric or args.add:
        return bool(args.symmetric)
    why = next((("%s/models/models_info.json (%s)" % (root, ", ".join(marks)))
                for root in args.data if bop.is_bop(root)
                for marks in [bop.symmetries(root, object_name)] if marks), None)
    why = why or next((os.path.splitext(s.image)[0] + ".json" for s in samples
                       if s.dialect == "nvisii" and _marked_in_frame(s.image, object_name)), None)
    if why:
        print("pose-train: %s is marked symmetric by %s: scored with ADD-S, as BOP scores "
              "symmetric objects (pass --add for ADD)" % (object_name, why))
    return bool(why)


def _marked_in_frame(image_path, object_name):
    """Whether the frame's JSON marks an object of the class ``"symmetric": true``."""
    try:
        with open(os.path.splitext(image_path)[0] + ".json") as f:
            objects = json.load(f).get("objects") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(str(o.get("class", "")).lower() == object_name.lower() and o.get("symmetric") is True
               for o in objects if isinstance(o, dict))


def detections_of(args, targets):
    """{object: {image: detections}} from --detections, each object's class read separately."""
    found = {}
    for t in targets:
        dets, settings = read_detections(args.detections, t["object"])
        if args.partial and not (settings or {}).get("partial"):
            print("pose-train: warning: %s was made without --partial, so it holds no partial "
                  "poses to score; rerun infer dope --partial" % args.detections, file=sys.stderr)
        found[t["object"]] = detections_per_sample(t["samples"], dets, args.detections)
        t["network"]["settings"] = settings
    return found


def score_target(args, t, found, source, several):
    """One object's results.json, results.md and worst overlays: OUTF, or OUTF/OBJECT when
    several are scored. Returns its results.md text."""
    samples = t["samples"]
    if not samples:
        raise UserError("no frame of %s could be scored for %r; see the lines above"
                        % (", ".join(args.data), t["object"]))
    outf = os.path.join(args.outf, _folder_name(t["object"])) if several else args.outf
    if several:
        files.make_folder(outf, "--outf")
    info = {"object": t["object"], "weights": t["network"]["weights"], "frames": len(samples),
            "negatives": sum(not len(s.points) for s in samples),
            "data": list(args.data), "metric": "ADD-S" if t["symmetric"] else "ADD",
            "points": t["what"], "source": source, "settings": t["network"]["settings"],
            "skipped": t["skipped"]}
    t["summary"], text = write_results(args, outf, samples, found, t, info)
    return text


def _remove_previous_results(outf, targets):
    """What an earlier eval into OUTF wrote (ours: the worst overlays, and the per-object
    folders its results.json or this run names), so none outlives this run."""
    shutil.rmtree(os.path.join(outf, "worst"), ignore_errors=True)
    try:
        with open(os.path.join(outf, "results.json")) as f:
            earlier = list(json.load(f).get("folders", {}).values())
    except (OSError, ValueError, AttributeError):
        earlier = []
    for name in set(earlier + [_folder_name(t["object"]) for t in targets]):
        folder = os.path.join(outf, _folder_name(str(name)))
        shutil.rmtree(os.path.join(folder, "worst"), ignore_errors=True)
        for result in ("results.json", "results.md"):
            if os.path.isfile(os.path.join(folder, result)):
                os.remove(os.path.join(folder, result))
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)


def _folder_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _say_if_the_cuboid_differs(samples, dims_cm):
    """ADD is measured on the weights' cuboid (or --dimensions); annotations of another size
    make every figure wrong by their difference, so that is said."""
    annotated = dimensions_of(samples)
    if annotated and max(abs(100 * a - b) / b for a, b in zip(annotated, dims_cm)) > 0.05:
        print("pose-train: warning: the annotations' cuboid is %s cm, the one scored with is %s "
              "cm (the weights' sidecar or --dimensions); pass --dimensions if the annotations "
              "are right" % (", ".join("%.2f" % (100 * a) for a in annotated),
                             ", ".join("%.2f" % b for b in dims_cm)), file=sys.stderr)


def scorable_frames(args, object_name):
    """(frames whose every object of the class can be scored, ``path: reason`` lines of the
    frames left out under --skip_bad)."""
    samples, report = scan(args.data, object_name, 1, max_pixels=args.max_pixels)
    problems = unscorable(report)
    for s in samples:
        if any(l is None or q is None for l, q in zip(s.locations_m, s.quaternions)):
            problems.setdefault(s.image, "a %s object has no usable ground-truth location and "
                                "quaternion_xyzw" % object_name)
    skipped = refuse_or_skip(problems, args.skip_bad)
    # Frames without the object stay: a network that poses something there, as the node
    # would publish it, scores a false positive.
    samples = [s for s in samples if s.image not in problems]
    if not any(len(s.points) for s in samples):
        raise UserError("no frame of %s has a %s object with a usable ground-truth pose to score; see "
                        "the lines above" % (", ".join(args.data), object_name))
    return samples, skipped


def score_all(samples, found, points, diameter, symmetric):
    """(rows, summary) over every frame."""
    rows, false_positives = [], 0
    for s in samples:
        frame_rows, extra = score_frame(s, found.get(os.path.abspath(s.image), []), points,
                                        symmetric)
        for row in frame_rows:
            row["gt_points"] = s.points[row["object"]].tolist()
        rows += frame_rows
        false_positives += extra
    return rows, summarize(rows, diameter, false_positives)


def write_results(args, outf, samples, found, t, info):
    """Score every frame and write results.json, results.md and the worst overlays into
    ``outf``; (summary, results.md text). Without --partial the figures are the node's; when
    partial poses would change them, those figures are given beside them."""
    points, diameter = t["points"], t["diameter"]
    rows, summary = score_all(samples, as_published(found, args.partial), points, diameter,
                              t["symmetric"])
    _, other = score_all(samples, as_published(found, not args.partial), points, diameter,
                         t["symmetric"])
    if other["detected"] != summary["detected"]:   # the figures the other choice would give
        summary["node_only" if args.partial else "with_partial"] = {k: other[k] for k in (
            "detected", "detection_rate", "add_below_0.1d", "add_auc_0_10cm", "false_positives")}
    atomic_write_json(os.path.join(outf, "results.json"),
                      {"summary": summary, "info": info, "objects": rows})
    text = results_markdown(summary, info)
    atomic_write(os.path.join(outf, "results.md"), lambda f: f.write(text), binary=False)
    write_worst(outf, rows, args.worst)
    return summary, text


def write_overall(args, targets, texts):
    """OUTF/results.{json,md} of several objects: a row per object and one over all of them
    (every figure weighted by objects, so it equals the figure of all rows pooled)."""
    summaries = {t["object"]: t["summary"] for t in targets}
    total = overall(list(summaries.values()))
    atomic_write_json(os.path.join(args.outf, "results.json"), {
        "summary": total, "per_object": summaries, "folders": {
            t["object"]: _folder_name(t["object"]) for t in targets}})
    metrics = sorted({"ADD-S" if t["symmetric"] else "ADD" for t in targets})
    text = overall_markdown(summaries, total, " / ".join(metrics))
    atomic_write(os.path.join(args.outf, "results.md"), lambda f: f.write(text), binary=False)
    return "\n".join([text] + texts)
